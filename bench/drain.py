"""A backlog drained into a legacy ERP at its capacity, per transport: the embedded queue and arq,
with and without faults, against the ERP's own capacity measured in the same run.

    .venv/bin/python bench/drain.py [--transport u8_eai|u8_openapi|k3_webapi|k3_soap|all]
                                    [--orders 20000] [--concurrency 4] [--service-ms 20]
                                    [--fault-rate 0.1] [--modes embedded,arq] [--workers 2] [--quick]

Each transport drains into the sandbox system its demo target speaks to (``drain_config.TRANSPORTS``:
Taobao → ``u8-demo`` → U8 EAI, Pinduoduo → ``u8-cloud-demo`` → U8+ OpenAPI, Douyin → ``k3-demo`` →
K3 WISE WebAPI, JD → ``k3soap-demo`` → K3 SOAP), with that platform's sample orders. The system is
set to serve at most ``--concurrency`` calls at once, each taking at least ``--service-ms``: a
nominal capacity of ``concurrency / service_ms`` calls per second (200/s by default), which is as
many documents per second only for a transport that needs one call per document. The target is
configured with the same concurrency limit, so it can at best keep every one of those slots busy.

1. Baseline, side by side (``drain_direct.py``): the sandbox driven directly with exactly
   ``concurrency`` calls in flight; U8 EAI by raw HTTP of pre-rendered XML (the ERP's cost alone),
   the others through the transport's own adapter (its client-side cost included). With
   ``--fault-rate`` again through that share of HTTP 500s with the gateway's exactly-once protocol.
2. Per mode (``embedded``: ``gateway serve`` on SQLite with its embedded worker; ``arq``:
   ``gateway serve`` as intake and outbox relay plus ``--workers`` ``gateway worker`` processes, on
   Redis and PostgreSQL), without faults and with ``--fault-rate`` HTTP 500s (seeded)
   (``drain_phase.py``): the target's line stopped, ``--orders`` orders accepted over HTTP, the
   system's capacity and faults set (its counters restart), the line resumed: the clock starts; it
   stops at the end of the last ERP call once the gateway's backlog is empty. Checked afterwards:
   the system holds one document per order (count == distinct codes == orders), no dead letter,
   never more than ``concurrency`` calls at once (``peak_open``); the call log gives the calls per
   document of each kind.

Targets: ≥ 95% of capacity without faults, ≥ 85% with faults, zero duplicate documents (the
capacity targets are met only by a transport with one call per document). Every process runs on
127.0.0.1 and is stopped by the run; request loops are bounded in count and time. ``--json``
(default ``bench/results/drain.json``) keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drain_config import (
    BENCH,
    CIRCUIT_THRESHOLD,
    REPO,
    RETRY_DELAY_S,
    TRANSPORTS,
    Transport,
    bench_config,
    build_orders,
    capacity,
    code_prefix,
    console,
    loadavg,
)
from drain_direct import direct_documents, run_direct
from drain_figures import postgres
from drain_phase import Phase, run_phase
from drain_report import legend, report, summary
from machine import tree_state

sys.path.insert(0, str(REPO))  # tests.support: the throwaway Redis and PostgreSQL servers


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--transport",
        default="u8_eai",
        help=f"{', '.join(TRANSPORTS)} or all (default u8_eai; all: each in turn and a summary table)",
    )
    ap.add_argument("--orders", type=int, default=20_000, help="backlog per run (default 20000)")
    ap.add_argument("--concurrency", type=int, default=4, help="the ERP's slots and the target's limit (4)")
    ap.add_argument("--service-ms", type=float, default=20.0, help="the ERP's time per call (20)")
    ap.add_argument("--fault-rate", type=float, default=0.1, help="share of HTTP 500s in the faulted runs (0.1)")
    ap.add_argument("--modes", default="embedded,arq", help="embedded, arq or both (default embedded,arq)")
    ap.add_argument("--workers", type=int, default=2, help="gateway worker processes in arq mode (2)")
    ap.add_argument("--direct", type=int, help="documents per direct-drive baseline (default: orders / 5, ≥ 1000)")
    ap.add_argument("--no-faults", action="store_true", help="skip the faulted runs")
    ap.add_argument(
        "--no-readback", action="store_true", help="what-if: the target's shipment read-back off (on in the demo)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2000 orders, 1000 direct documents")
    ap.add_argument(
        "--env", action="append", default=[], metavar="GATEWAY_X=V", help="extra gateway setting (what-if runs)"
    )
    ap.add_argument("--json", type=Path, default=BENCH / "results" / "drain.json", help="where to write the figures")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, logs)")
    ap.add_argument(
        "--timeline", action="store_true", help="also print the time share per number of calls at the ERP at once"
    )
    ap.add_argument("--profile", type=Path, help="py-spy the delivering process (serve, or worker 1) into DIR")
    args = ap.parse_args()
    if args.quick:
        args.orders = min(args.orders, 2000)
    args.transports = list(TRANSPORTS) if args.transport == "all" else [args.transport]
    if any(t not in TRANSPORTS for t in args.transports):
        ap.error(f"--transport takes {', '.join(TRANSPORTS)} or all")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.mode_list or any(m not in ("embedded", "arq") for m in args.mode_list):
        ap.error("--modes takes embedded, arq or embedded,arq")
    if not (100 <= args.orders <= 200_000 and 1 <= args.concurrency <= 64 and 1 <= args.service_ms <= 10_000):
        ap.error("--orders 100..200000, --concurrency 1..64, --service-ms 1..10000")
    if not (0 <= args.fault_rate < 0.5 and 1 <= args.workers <= 8):
        ap.error("--fault-rate 0..0.5, --workers 1..8")
    if any(not kv.startswith("GATEWAY_") or "=" not in kv for kv in args.env):
        ap.error("--env takes GATEWAY_NAME=value")
    args.direct_count = args.direct or (1000 if args.quick else max(1000, args.orders // 5))
    args.fault_rates = [0.0] if args.no_faults or not args.fault_rate else [0.0, args.fault_rate]
    return args


def run_transport(tr: Transport, tmp: Path, args: argparse.Namespace, pg: Any) -> dict[str, Any]:
    """The direct drives and every mode's runs of one transport."""
    folder = tmp / tr.name
    folder.mkdir()
    configs = {}
    for mode in args.mode_list:
        configs[mode] = folder / f"gateway-{mode}.toml"
        configs[mode].write_text(bench_config(args, tr, mode), encoding="utf-8")
    bodies_file = folder / "bodies.jsonl"
    bodies_file.write_bytes(b"\n".join(build_orders(tr, args.orders, first=1)) + b"\n")
    console.print(
        f"[bold]{tr.name}[/bold]: {tr.platform} orders → target {tr.target} → sandbox system {tr.system};"
        f" load {loadavg()}"
    )
    docs = direct_documents(tr, build_orders(tr, args.direct_count, first=9_000_000), configs[args.mode_list[0]])
    direct: dict[str, dict[str, Any]] = {}
    for rate in args.fault_rates:
        name = "direct" if not rate else "direct+faults"
        console.print(f"  {name}: {args.direct_count:,} documents at exactly {args.concurrency} calls in flight …")
        direct[name] = d = run_direct(name, tr, docs, rate, folder, configs[args.mode_list[0]], args)
        console.print(
            f"  {name}: {d['per_s']:.1f} docs/s ({d['calls']:,} ERP calls, {d['faults']} faults;"
            f" {d['held']:,} held under {d['distinct_codes']:,} codes)"
        )
    runs = []
    prefix = code_prefix(tr)
    for mode in args.mode_list:
        for rate in args.fault_rates:
            name = re.sub(r"[^A-Za-z0-9+%-]", "", mode + (f"+{rate:.0%}-500s" if rate else ""))
            phase = Phase(tr, mode, rate, prefix, name)
            console.print(f"  {tr.name} {name}: backlog of {args.orders:,} with the line stopped …")
            runs.append(run_phase(phase, bodies_file, configs[mode], folder, args, pg))
    return {"transport": tr.name, "target": tr.target, "system": tr.system, "direct": direct, "runs": runs}


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gw-drain-"))
    results: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    tree = tree_state()  # the tree measured: taken before the runs, as the tree may change meanwhile
    console.print(f"tree: {tree}; {os.cpu_count()} CPUs; load {loadavg()}")
    console.print(
        f"drain: {args.orders:,} orders per run, transports {', '.join(args.transports)}, at {args.concurrency}"
        f" calls x {args.service_ms:g} ms (nominal {capacity(args):.0f} calls/s); modes {', '.join(args.mode_list)}"
        + (f", {args.workers} arq workers" if "arq" in args.mode_list else "")
        + (f"; faults: {args.fault_rate:.0%} HTTP 500" if len(args.fault_rates) > 1 else "")
    )
    if len(args.fault_rates) > 1:
        calls, p = 1.25 * args.orders, args.fault_rate
        console.print(
            f"target: limits.concurrency {args.concurrency}; a 500 is an unknown outcome, retried after"
            f" {RETRY_DELAY_S:g} s with a look-up first; circuit opens after {CIRCUIT_THRESHOLD} failures in a"
            f" row: with {p:.0%} random 500s over ~{calls:,.0f} calls the chance of such a run is"
            f" ~{calls * (1 - p) * p**CIRCUIT_THRESHOLD:.0e} (threshold 5: ~{calls * (1 - p) * p**5:.0e})"
        )
    try:
        with ExitStack() as stack:
            pg = stack.enter_context(postgres()) if "arq" in args.mode_list else None
            for name in args.transports:
                results.append(run_transport(TRANSPORTS[name], tmp, args, pg))
    finally:
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = True
    for res in results:
        ok &= report(res["transport"], res["direct"], res["runs"], args)
    legend(args)
    if len(results) > 1:
        summary(results, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "benchmark": "drain",
        "at": started.isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "tree": tree,
        "args": {k: str(v) for k, v in vars(args).items()},
        "nominal_per_s": capacity(args),
        "transports": results,
    }
    if len(results) == 1:  # the shape of the U8-only runs before, for comparison
        figures.update(direct=results[0]["direct"], runs=results[0]["runs"])
    args.json.write_text(json.dumps(figures, indent=2))
    console.print(f"figures: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
