"""Each platform's compiled dictionary vs. a hand-written translator, side by side, with ratios.

    .venv/bin/python bench/mapping.py [--platform jd ...] [--rounds 61] [--target-ms 15] [--json FILE]

Every platform with a dictionary in ``mappings/platforms/`` and a twin ``bench/handwritten_<platform>.py``
takes part. First proves that both give the same canonical order for every sample (a benchmark of two
different outputs measures nothing), then times them interleaved: each round runs a batch of the
compiled mapper and a batch of the hand-written one per sample, in alternating order, with the
garbage collector off during a batch (as ``timeit`` does). The figure is the median µs/op over
the rounds, next to the fastest batch; the ratio is the median of the per-round ratios of
neighbouring batches, which cancels most of what other processes on the machine do, with a 95%
confidence interval from order statistics. ``unknown_fields``, which intake also runs on every
order, is timed the same way, separately.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from machine import tree_state

from gateway.mapping.dictionary import load_dictionary

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
TARGET_RATIO = 1.5


def platforms() -> list[str]:
    """Platforms with both a dictionary and a hand-written twin."""
    have = {p.stem for p in (REPO / "mappings" / "platforms").glob("*.toml")}
    return sorted(p for p in have if (BENCH / f"handwritten_{p}.py").is_file())


def samples(platform: str) -> list[tuple[str, Any]]:
    """A platform's order samples ``0?_*.json``; ``x.refund_get.json`` (two dots) are not orders."""
    folder = REPO / "mappings" / "samples" / platform
    files = sorted(f for f in folder.glob("0?_*.json") if f.name.count(".") == 1)
    return [(f"{platform}/{f.stem}", msgspec.json.decode(f.read_bytes())) for f in files]


def check_equal(name: str, compiled: Any, handwritten: Any) -> None:
    a, b = msgspec.to_builtins(compiled), msgspec.to_builtins(handwritten)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise SystemExit(f"{name}: compiled and hand-written outputs differ in {diff}; fix before timing")


def per_op_ns(fn: Callable[[Any], Any], arg: Any, n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn(arg)
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def calibrate(fn: Callable[[Any], Any], arg: Any, target_ns: float) -> int:
    """Iterations for one batch of about ``target_ns`` (bounded: 10 … 200,000)."""
    n = 10
    while True:
        took = per_op_ns(fn, arg, n) * n
        if took >= target_ns / 4 or n >= 200_000:
            return max(10, min(200_000, int(n * target_ns / max(took, 1.0))))
        n *= 4


def median_ci(values: list[float]) -> tuple[float, float, float]:
    """Median and a distribution-free 95% confidence interval for it (order statistics)."""
    v = sorted(values)
    n = len(v)
    half = 0.98 * n**0.5  # 1.96 * sqrt(n) / 2
    lo, hi = max(0, int(n / 2 - half)), min(n - 1, int(n / 2 + half))
    return statistics.median(v), v[lo], v[hi]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--platform", action="append", default=None, help="only this platform (repeatable)")
    ap.add_argument("--rounds", type=int, default=61, help="interleaved rounds (default 61)")
    ap.add_argument("--target-ms", type=float, default=15.0, help="length of one timed batch (default 15 ms)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if not 3 <= args.rounds <= 1001 or not 1 <= args.target_ms <= 2000:
        ap.error("--rounds 3..1001, --target-ms 1..2000")

    chosen = args.platform or platforms()
    unknown = sorted(set(chosen) - set(platforms()))
    if unknown:
        ap.error(f"no dictionary + bench/handwritten_<platform>.py for {unknown}; have {platforms()}")
    cases: list[tuple[str, Any]] = []
    fns: dict[str, dict[str, Callable[[Any], Any]]] = {}
    for plat in chosen:
        dictionary = load_dictionary(REPO / "mappings" / "platforms" / f"{plat}.toml")
        handwritten = getattr(importlib.import_module(f"handwritten_{plat}"), f"handwritten_{plat}")
        found = samples(plat)
        if not found:
            raise SystemExit(f"no samples for {plat}")
        for name, payload in found:
            check_equal(name, dictionary.translate(payload), handwritten(payload))
            fns[name] = {
                "compiled": dictionary.translate,
                "handwritten": handwritten,
                "unknown_fields": dictionary.unknown_fields,
            }
        cases += found
    print(f"tree: {tree_state()}")
    print(f"outputs equal (msgspec.to_builtins) for {len(cases)} samples: {', '.join(n for n, _ in cases)}")

    target_ns = args.target_ms * 1e6
    contenders = ("compiled", "handwritten", "unknown_fields")
    batch = {(c, name): calibrate(fns[name][c], payload, target_ns) for name, payload in cases for c in contenders}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in batch}
    ratios: dict[str, list[float]] = {name: [] for name, _ in cases}
    order = list(contenders)
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for name, payload in cases:
            for c in order if r % 2 == 0 else order[::-1]:
                times[(c, name)].append(per_op_ns(fns[name][c], payload, batch[(c, name)]))
            # Neighbouring batches share whatever else the machine was doing: their ratio cancels it.
            ratios[name].append(times[("compiled", name)][-1] / times[("handwritten", name)][-1])
    load_after = os.getloadavg()[0]

    print(
        f"\n{args.rounds} interleaved rounds of ~{args.target_ms:g} ms batches;"
        f" load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print("µs/op: median [fastest batch]; ratio: median of per-round ratios (95% CI)")
    print(f"{'sample':36} {'compiled':>17} {'hand-written':>17} {'ratio':>20} {'unknown_fields':>17}")
    rows = []
    for name, _ in cases:
        med = {c: statistics.median(times[(c, name)]) / 1000 for c in contenders}
        best = {c: min(times[(c, name)]) / 1000 for c in contenders}
        ratio, lo, hi = median_ci(ratios[name])
        rows.append(
            {"sample": name, "us_per_op_median": med, "us_per_op_min": best, "ratio": ratio, "ratio_ci95": [lo, hi]}
        )
        print(
            f"{name:36} {med['compiled']:7.1f} [{best['compiled']:6.1f}]"
            f" {med['handwritten']:7.1f} [{best['handwritten']:6.1f}]"
            f" {ratio:6.2f}x ({lo:.2f}–{hi:.2f})"
            f" {med['unknown_fields']:7.1f} [{best['unknown_fields']:6.1f}]"
        )
    per_platform = {}
    print()
    for plat in chosen:
        mine = [r["ratio"] for r in rows if r["sample"].startswith(f"{plat}/")]
        per_platform[plat] = {"geomean": statistics.geometric_mean(mine), "worst": max(mine)}
        print(
            f"{plat:16} compiled/hand-written: geometric mean {per_platform[plat]['geomean']:.2f}x,"
            f" worst sample {per_platform[plat]['worst']:.2f}x"
        )
    geo = statistics.geometric_mean([r["ratio"] for r in rows])
    worst = max(r["ratio"] for r in rows)
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"all: geometric mean {geo:.2f}x, worst {worst:.2f}x")
    print(f"target ≤ {TARGET_RATIO}x on every sample of every platform: {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "benchmark": "mapping",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "tree": tree_state(),
            "rounds": args.rounds,
            "load_average": [load_before, load_after],
            "samples": rows,
            "platforms": per_platform,
            "ratio_geomean": geo,
            "ratio_worst": worst,
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
