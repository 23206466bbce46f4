"""The load generator of ``bench/ingest.py``: asyncio in its own process, fixed concurrency.

Reads pre-built request bodies (one compact JSON document per line) before it starts the clock,
sends the first ``--warmup`` of them untimed, then the rest over ``--concurrency`` keep-alive
connections, each body exactly once, stopping early at ``--duration`` seconds. Prints one JSON
object: throughput, latency percentiles and every answer that was not a 202.

With ``--url`` given more than once (several server processes, each on its own port) connection
``i`` goes to URL ``i mod n``: the connections, and so the load, are spread evenly over them, as a
round-robin load balancer in front of the processes would.

Two clients, same protocol (HTTP/1.1 keep-alive, one request in flight per connection):

* ``raw`` (default): a minimal HTTP/1.1 client on asyncio streams, about 0.1 ms of CPU per
  request. The load generator shares the machine with the servers, so it must stay light.
* ``httpx``: one ``httpx.AsyncClient``. On a 2-core machine it spends about 0.8 ms of CPU per
  request and tops out near 550–650 requests/s at 32 connections against a trivial endpoint, so it
  measures itself rather than the server; kept for comparison.

    BENCH_AUTH='Bearer …' .venv/bin/python bench/loadgen.py --url URL [--url URL2 …] --bodies FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Send = Callable[[bytes], Awaitable[tuple[int, bytes]]]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class RawConnection:
    """One keep-alive HTTP/1.1 connection that POSTs a body and reads a Content-Length answer."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}".encode()
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    async def send(self, body: bytes) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._send(body), self.timeout)
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise

    async def _send(self, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._open()
        writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, keep = None, True
        for ln in lines[1:]:
            name, _, value = ln.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not supported by the raw client")
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length is None:
            raise ValueError("answer without Content-Length")
        answer = await reader.readexactly(length)
        if not keep:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def send_all(senders: list[Send], bodies: list[bytes], deadline: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    samples: dict[int, str] = {}
    it = iter(bodies)

    async def worker(send: Send) -> None:
        for body in it:  # a shared iterator: each body is sent once, by whichever connection is free
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                status, answer = await send(body)
            except Exception as exc:  # counted and reported; the run goes on
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1
            if status != 202 and status not in samples:
                samples[status] = answer[:300].decode("utf-8", "replace")

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in senders))
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


async def run(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if os.environ.get("BENCH_AUTH"):
        headers["Authorization"] = os.environ["BENCH_AUTH"]
    closers: list[Callable[[], Any]] = []
    if args.client == "raw":
        urls = args.url
        conns = [RawConnection(urls[i % len(urls)], headers, args.timeout) for i in range(args.concurrency)]
        senders: list[Send] = [c.send for c in conns]
        closers += [c.close for c in conns]
    else:
        import httpx

        per_url = max(1, args.concurrency // len(args.url))
        limits = httpx.Limits(max_connections=per_url, max_keepalive_connections=per_url)
        clients = [httpx.AsyncClient(headers=headers, limits=limits, timeout=args.timeout) for _ in args.url]

        def sender(client: httpx.AsyncClient, url: str) -> Send:
            async def send(body: bytes) -> tuple[int, bytes]:
                r = await client.post(url, content=body)
                return r.status_code, r.content

            return send

        senders = [sender(clients[i % len(clients)], args.url[i % len(args.url)]) for i in range(args.concurrency)]
        closers += [c.aclose for c in clients]
    try:
        warm = await send_all(senders, bodies[: args.warmup], time.monotonic() + args.duration)
        measured = await send_all(senders, bodies[args.warmup :], time.monotonic() + args.duration)
    finally:
        for close in closers:
            done = close()
            if asyncio.iscoroutine(done):
                await done
    measured["warmup"] = {k: warm[k] for k in ("sent", "accepted_202", "non_202", "errors", "elapsed_s")}
    measured["requested"] = len(bodies) - args.warmup
    measured["concurrency"] = args.concurrency
    measured["client"] = args.client
    return measured


def main() -> int:
    ap = argparse.ArgumentParser(description="fixed-concurrency HTTP load generator for bench/ingest.py")
    ap.add_argument("--url", required=True, action="append", help="a server's URL; repeat for several servers")
    ap.add_argument("--bodies", required=True, help="file of request bodies, one compact JSON per line")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=300, help="bodies sent first, untimed")
    ap.add_argument("--duration", type=float, default=90.0, help="cap in seconds for each phase")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    args = ap.parse_args()
    bodies = [line for line in Path(args.bodies).read_bytes().split(b"\n") if line]
    if len(bodies) <= args.warmup:
        raise SystemExit(f"{args.bodies}: {len(bodies)} bodies, need more than --warmup {args.warmup}")
    try:  # installed with uvicorn[standard]; a lighter client leaves more CPU to the server
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    json.dump(run_loop(run(args, bodies)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
