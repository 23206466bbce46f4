"""The rules' share of intake for ``bench/ingest.py``: the gateway's own histograms, and stock so
that the stateful rules have something to read.

- :func:`scrape` reads ``GET /metrics`` (Prometheus text, no auth) of one gateway process and
  sums the ``intake_seconds`` and ``rules_seconds`` histograms (``_sum`` and ``_count``, every
  series; with or without a ``gateway_`` namespace). :func:`rules_share` takes the difference of
  two scrapes of every server process: rules seconds over intake seconds, and µs per order of each.
- :func:`stock_items` lists the bench sample's merchant SKUs (the compiled Taobao dictionary's
  ``lines[].merchant_sku``) with plenty on hand in each warehouse the rule set's warehouse action
  can choose (:func:`warehouses`); :func:`report_stock` sends them to ``POST /v1/stock`` (role
  ``wms``) so the oversell rule and the warehouse action read real levels.
- Run as a script, it is ``bench/loadgen.py`` with a pause between the warm-up and the timed phase:
  it writes ``WARMED_UP`` to stderr and waits for a line on stdin, so ``ingest.py`` can scrape the
  metrics there and leave the warm-up out. The connections stay open (the pause is a scrape, a few
  milliseconds, far below uvicorn's 5 s keep-alive) and the phase's time cap starts after it.

    .venv/bin/python bench/intake_metrics.py LOADGEN-ARGS…
"""

from __future__ import annotations

import re
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec

REPO = Path(__file__).resolve().parents[1]
TARGET_RULES_SHARE = 0.15
WARMED_UP = "WARMED_UP"
RULES_FILE = REPO / "mappings" / "rules" / "default.toml"
DEFAULT_WAREHOUSES = ("WH-SH",)

# ``intake_seconds_sum 1.5`` or ``gateway_rules_seconds_count{platform="taobao"} 7.0``
_SERIES = re.compile(r"^(?:gateway_)?(intake|rules)_seconds_(sum|count)(?:\{[^}]*\})?\s+(\S+)", re.MULTILINE)


# --------------------------------------------------------------------------- metrics


def parse(text: str) -> dict[str, float]:
    """``{"intake_sum", "intake_count", "rules_sum", "rules_count"}`` summed over every series;
    a histogram the process does not export is missing from the result."""
    out: dict[str, float] = {}
    for name, part, value in _SERIES.findall(text):
        key = f"{name}_{part}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def exported_names(text: str) -> list[str]:
    """The histogram names as exported (``gateway_rules_seconds`` or ``rules_seconds``)."""
    names = re.findall(r"^# TYPE ((?:gateway_)?(?:intake|rules)_seconds) histogram", text, re.MULTILINE)
    return sorted(set(names))


def scrape(base: str) -> dict[str, Any]:
    """One gateway process's intake and rules histograms."""
    r = httpx.get(f"{base}/metrics", timeout=30)
    r.raise_for_status()
    return {"values": parse(r.text), "names": exported_names(r.text)}


def rules_share(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rules over intake between two scrapes of the same processes (each list in server order)."""

    def delta(key: str) -> float:
        return sum(a["values"].get(key, 0.0) - b["values"].get(key, 0.0) for b, a in zip(before, after, strict=True))

    names = sorted({n for s in after for n in s["names"]})
    has_rules = all("rules_sum" in s["values"] for s in after)
    intake_s, intake_n = delta("intake_sum"), delta("intake_count")
    rules_s, rules_n = delta("rules_sum"), delta("rules_count")
    share = rules_s / intake_s if has_rules and intake_s > 0 else None
    return {
        "names": names,
        "has_rules_metric": has_rules,
        "intake_s": intake_s,
        "intake_orders": int(intake_n),
        "rules_s": rules_s,
        "rules_orders": int(rules_n),
        "intake_us_per_order": intake_s / intake_n * 1e6 if intake_n else None,
        "rules_us_per_order": rules_s / rules_n * 1e6 if has_rules and rules_n else None,
        "share": share,
        "target": TARGET_RULES_SHARE,
        "met": None if share is None else share < TARGET_RULES_SHARE,
    }


def describe(r: dict[str, Any]) -> str:
    """``rules share 4.2% (target < 15%) met: rules 38 µs of intake 905 µs per order (5300 orders)``"""
    if r["share"] is None:
        why = "no rules_seconds in /metrics" if not r["has_rules_metric"] else "no intake time recorded"
        return f"rules share n/a (target < {TARGET_RULES_SHARE:.0%}): {why}"
    verdict = "met" if r["met"] else "NOT met"
    return (
        f"rules share {r['share'] * 100:.1f}% (target < {TARGET_RULES_SHARE:.0%}) {verdict}:"
        f" rules {r['rules_us_per_order']:.1f} µs of intake {r['intake_us_per_order']:.0f} µs per order"
        f" ({r['intake_orders']} orders timed; {', '.join(r['names'])})"
    )


# --------------------------------------------------------------------------- stock


def sample_lines(sample: Path) -> list[tuple[str, int]]:
    """(merchant SKU, quantity) of each line of ``sample``, as the Taobao dictionary maps them."""
    from gateway.mapping.dictionary import load_dictionary

    dictionary = load_dictionary(REPO / "mappings" / "platforms" / "taobao.toml")
    order = dictionary.translate(msgspec.json.decode(sample.read_bytes()))
    return [(line.merchant_sku, line.qty) for line in order.lines]


def warehouses(rule_file: Path = RULES_FILE) -> tuple[str, ...]:
    """Every warehouse the rule set's warehouse actions can choose (``by_region`` lists, then
    ``fallback``), first seen first; ``DEFAULT_WAREHOUSES`` when it names none. A fresh database
    seeds its rule set from this file."""
    names: list[str] = []
    for action in tomllib.loads(rule_file.read_text(encoding="utf-8")).get("actions", []):
        if action.get("do") == "warehouse":
            names += [w for region in action.get("by_region", {}).values() for w in region]
            names += [action["fallback"]] if action.get("fallback") else []
    return tuple(dict.fromkeys(names)) or DEFAULT_WAREHOUSES


def stock_items(sample: Path, orders: int, warehouses: Sequence[str] = DEFAULT_WAREHOUSES) -> list[dict[str, Any]]:
    """Each SKU of the sample in each warehouse with ten times what ``orders`` copies of the sample
    take of it on hand, so no bench order is held for overselling. No ``as_of``: the gateway
    takes the time it receives the count."""
    need: dict[str, int] = {}
    for sku, qty in sample_lines(sample):
        need[sku] = need.get(sku, 0) + qty
    return [
        {"sku": sku, "warehouse": wh, "on_hand": 10 * orders * qty} for sku, qty in need.items() for wh in warehouses
    ]


def report_stock(base: str, auth: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``POST /v1/stock`` with ``items``; ``{"landed": False}`` when the gateway has no such endpoint
    (404/405), the answer's JSON otherwise. Any other failure stops the benchmark."""
    r = httpx.post(
        f"{base}/v1/stock",
        json={"items": items},
        headers={"Authorization": auth},
        timeout=30,
    )
    if r.status_code in (404, 405):
        return {"landed": False, "status": r.status_code, "items": len(items)}
    if r.status_code >= 300:
        raise SystemExit(f"POST /v1/stock answered {r.status_code} {r.text[:500]}")
    try:
        answer = r.json()
    except ValueError:
        answer = r.text[:300]
    return {"landed": True, "status": r.status_code, "items": len(items), "answer": answer}


# --------------------------------------------------------------------------- paused load generator


def main() -> int:
    """``bench/loadgen.py`` with a handshake between its two phases (see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import loadgen

    original = loadgen.send_all
    calls = 0

    async def send_all(senders: list[loadgen.Send], bodies: list[bytes], deadline: float) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the warm-up is done, the timed phase is next
            paused = time.monotonic()
            sys.stderr.write(WARMED_UP + "\n")
            sys.stderr.flush()
            sys.stdin.readline()  # nothing else runs meanwhile: the connections are idle
            deadline += time.monotonic() - paused
        return await original(senders, bodies, deadline)

    loadgen.send_all = send_all  # type: ignore[assignment]
    return loadgen.main()


if __name__ == "__main__":
    sys.exit(main())
