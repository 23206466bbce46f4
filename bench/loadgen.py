"""The load generator of ``bench/ingest.py``: an asyncio httpx client in its own process.

Reads pre-built request bodies (one compact JSON document per line) before it starts the clock,
sends the first ``--warmup`` of them untimed, then the rest with ``--concurrency`` connections,
each body exactly once, stopping early at ``--duration`` seconds. Prints one JSON object:
throughput, latency percentiles and every answer that was not a 202.

    BENCH_AUTH='Bearer …' .venv/bin/python bench/loadgen.py --url URL --bodies FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def send_all(
    client: httpx.AsyncClient, url: str, bodies: list[bytes], concurrency: int, deadline: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    samples: dict[int, str] = {}
    it = iter(bodies)

    async def worker() -> None:
        for body in it:  # a shared iterator: each body is sent once, by whichever worker is free
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                r = await client.post(url, content=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] += 1
            if r.status_code != 202 and r.status_code not in samples:
                samples[r.status_code] = r.text[:300]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    sent = len(latencies)
    return {
        "sent": sent,
        "elapsed_s": elapsed,
        "rps": sent / elapsed if elapsed else 0.0,
        "accepted_202": statuses.get(202, 0),
        "non_202": {str(k): v for k, v in sorted(statuses.items()) if k != 202},
        "non_202_samples": {str(k): v for k, v in samples.items()},
        "errors": dict(errors),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else 0.0,
        "mean_ms": (sum(latencies) / sent * 1000) if sent else 0.0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bodies = [line for line in Path(args.bodies).read_bytes().split(b"\n") if line]
    if len(bodies) <= args.warmup:
        raise SystemExit(f"{args.bodies}: {len(bodies)} bodies, need more than --warmup {args.warmup}")
    headers = {"Content-Type": "application/json"}
    if os.environ.get("BENCH_AUTH"):
        headers["Authorization"] = os.environ["BENCH_AUTH"]
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=args.timeout) as client:
        warm = await send_all(
            client, args.url, bodies[: args.warmup], args.concurrency, time.monotonic() + args.duration
        )
        measured = await send_all(
            client, args.url, bodies[args.warmup :], args.concurrency, time.monotonic() + args.duration
        )
    measured["warmup"] = {k: warm[k] for k in ("sent", "accepted_202", "non_202", "errors")}
    measured["requested"] = len(bodies) - args.warmup
    measured["concurrency"] = args.concurrency
    return measured


def main() -> int:
    ap = argparse.ArgumentParser(description="fixed-concurrency httpx load generator for bench/ingest.py")
    ap.add_argument("--url", required=True)
    ap.add_argument("--bodies", required=True, help="file of request bodies, one compact JSON per line")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=200, help="bodies sent first, untimed")
    ap.add_argument("--duration", type=float, default=90.0, help="cap in seconds for each phase")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    args = ap.parse_args()
    try:  # installed with uvicorn[standard]; a lighter client leaves more CPU to the server
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    json.dump(run_loop(run(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
