"""The tables a drain prints: one per transport (every run against that transport's direct drive)
and, for ``--transport all``, one summary over the transports."""

from __future__ import annotations

import argparse
from typing import Any

from drain_config import TARGET_CLEAN, TARGET_FAULTS, capacity, console
from rich.table import Table


def share(x: float, of: float) -> str:
    return f"{x / of * 100:.1f}%" if of else "-"


def complete(r: dict[str, Any]) -> bool:
    """One document per order under as many distinct codes, no dead letter."""
    return r["documents"] == r["distinct_codes"] == r["orders"] and not r["db"]["dead_letters"]


def met(r: dict[str, Any], args: argparse.Namespace) -> bool:
    goal = TARGET_FAULTS if r["fault_rate"] else TARGET_CLEAN
    return r["per_s"] >= goal * capacity(args)


def report(
    transport: str, direct: dict[str, dict[str, Any]], runs: list[dict[str, Any]], args: argparse.Namespace
) -> bool:
    """The table of one transport; True when every run kept every promise and met its target."""
    nominal = capacity(args)
    clean = direct.get("direct")
    system = runs[0]["system"] if runs else ""
    at = f"{args.concurrency} x {args.service_ms:g} ms"
    table = Table(title=f"{transport}: drain of {args.orders:,} orders into {system} at {at}")
    for col in ("run", "docs", "time s", "docs/s", "vs nominal", "vs direct", "vs direct+faults", "ERP busy"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for col in ("calls/doc", "peak open", "dup", "others", "load"):
        table.add_column(col, justify="right")
    for name, d in direct.items():
        table.add_row(
            name,
            f"{d['documents']:,}",
            f"{d['seconds']:.1f}",
            f"{d['per_s']:.1f}",
            share(d["per_s"], nominal),
            share(d["per_s"], clean["per_s"]) if clean else "-",
            share(d["per_s"], direct[name]["per_s"]) if d["fault_rate"] else "-",
            share(d["calls"] / d["seconds"], nominal),
            f"{d['calls'] / max(d['documents'], 1):.3f}",
            str(d["peak_open"]),
            str(d["held"] - d["distinct_codes"]),
            f"{d['others_share'] * 100:.0f}%",
            d["load"],
        )
    ok = True
    for r in runs:
        faulted = r["fault_rate"] > 0
        ok &= complete(r) and met(r, args) and r["peak_open"] <= args.concurrency
        faulted_direct = direct.get("direct+faults")
        table.add_row(
            r["name"],
            f"{r['documents']:,}" + ("" if complete(r) else " !"),
            f"{r['seconds']:.1f}",
            f"{r['per_s']:.1f}",
            share(r["per_s"], nominal),
            share(r["per_s"], clean["per_s"]) if clean else "-",
            share(r["per_s"], faulted_direct["per_s"]) if faulted and faulted_direct else "-",
            share(r["calls"] / r["seconds"], nominal),
            f"{r['calls'] / max(r['documents'], 1):.3f}",
            str(r["peak_open"]),
            str(r["documents"] - r["distinct_codes"]),
            f"{r['others_share'] * 100:.0f}%",
            r["load_before"],
        )
    console.print()
    console.print(table)
    if clean:
        console.print(f"direct drive: {clean['client']}")
    for r in runs:
        check = "OK" if complete(r) else "MISMATCH"
        console.print(
            f"{r['name']}: {r['distinct_codes']:,} documents under {r['distinct_codes']:,} codes"
            f" ({r['documents']:,} in all) for {r['orders']:,} orders: {check};"
            f" target ≥ {(TARGET_FAULTS if r['fault_rate'] else TARGET_CLEAN):.0%} of capacity"
            f" {'met' if met(r, args) else 'NOT met'}; ingest {r['ingest_per_s']:.0f} orders/s;"
            f" attempts {r['db']['attempts']:,}, dead letters {r['db']['dead_letters']}; CPU "
            + ", ".join(f"{k} {v:.0f} s" for k, v in r["cpu_s"].items())
            + f" over {r['watched_s']:.0f} s"
            + "".join(
                f"; {k.replace('_', ' ')}/doc {v / max(r['documents'], 1):.1f}"
                for k, v in r["store_ops"].items()
                if not k.startswith("redis:")
            )
        )
        calls = r["erp_calls"]
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in calls["per_document"].items())
        outcomes = ", ".join(f"{k} {v:,}" for k, v in calls["outcomes"].items())
        console.print(
            f"  ERP calls per document: {kinds} (outcomes: {outcomes})"
            + ("" if calls["complete"] else " — the sandbox's log had dropped older calls")
        )
        if r["erp_in_flight_share"]:
            shares = ", ".join(f"{k}: {v:.1%}" for k, v in r["erp_in_flight_share"].items())
            console.print(f"  calls at the ERP at once, share of the drain's time: {shares}")
    return ok


def legend(args: argparse.Namespace) -> None:
    console.print(
        f"nominal capacity {capacity(args):.0f} calls/s ({args.concurrency} slots / {args.service_ms:g} ms): every call"
        " takes a slot (a token, a trade id, a look-up or a 500 like a document); ERP busy: calls served per second"
        " over it; calls/doc: ERP calls per document; peak open: most calls at the ERP at once; dup: documents beyond"
        " one per code; others: CPU used by processes outside the run; load: 1/5/15-min load average at the start."
        " Direct drive for U8 EAI: raw HTTP of pre-rendered XML; for the others: the transport's own adapter"
        " (its client-side cost included)"
    )


def summary(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """One row per transport and run: what the brief of the run asks to compare."""
    at = f"{args.concurrency} x {args.service_ms:g} ms (nominal {capacity(args):.0f} calls/s)"
    table = Table(title=f"Drain of {args.orders:,} orders per run, every transport, {at}")
    for col in ("transport", "run", "direct docs/s", "gateway docs/s", "vs nominal", "vs direct", "calls/doc"):
        table.add_column(col, justify="left" if col in ("transport", "run") else "right")
    table.add_column("exactly once")
    for res in results:
        for r in res["runs"]:
            base = res["direct"].get("direct+faults" if r["fault_rate"] else "direct")
            dup = r["documents"] - r["distinct_codes"]
            check = "OK" if complete(r) else f"NO: {r['documents']} docs, {dup} dup, {r['db']['dead_letters']} dead"
            table.add_row(
                res["transport"],
                r["name"],
                f"{base['per_s']:.1f}" if base else "-",
                f"{r['per_s']:.1f}",
                share(r["per_s"], capacity(args)),
                share(r["per_s"], base["per_s"]) if base else "-",
                f"{r['calls'] / max(r['documents'], 1):.2f}",
                check,
            )
    console.print()
    console.print(table)
    console.print("vs direct: against the same transport's direct drive, with the same faults for a faulted run")
