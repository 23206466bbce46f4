"""Accepted, durable orders per second over HTTP, side by side with a bare endpoint.

    .venv/bin/python bench/ingest.py [--requests 5000] [--concurrency 32] [--no-delivery]
    .venv/bin/python bench/ingest.py --database postgres [--servers 2] [--workers 1] [--no-delivery]

In one run, against the same pre-built bodies (Taobao sample 02, each with its own tid/oid so
every request is a new order and a real insert):

1. the baseline, ``bench/baseline_app.py`` (Litestar: msgspec decode, 202), under uvicorn;
2. ``gateway serve`` on a fresh SQLite file (``GATEWAY_DATABASE_URL``) with a fresh platform key
   from ``gateway keys create``, one uvicorn process like the baseline, embedded worker on.

Deliveries: by default ``gateway sandbox`` runs in a third process and ``GATEWAY_SANDBOX_URL``
points at it, so orders really reach the simulated U8 during the run and the delivery worker
competes with intake for the same process and database. ``--no-delivery`` points the URL at a
closed port instead: each delivery fails at connect and backs off (1 s, 2 s, 4 s …).

The load comes from ``bench/loadgen.py`` (asyncio, fixed concurrency) in its own process: a warm-up,
then ``--requests`` bodies, each sent once, capped at ``--duration`` seconds. Afterwards the
SQLite file must hold exactly as many orders as there were 202 answers. The pair of runs is
repeated ``--repeat`` times (baseline, gateway, baseline, …; a fresh database each time) and the
median run of each server is compared: on a shared 2-core virtual machine one run alone can be
off by 20%.

The rules' share of intake, with the whole rule catalog at work: before the first order each
gateway run reports the sample's SKUs in stock (``POST /v1/stock`` with a ``wms`` key, in every
warehouse the rule set's warehouse action can choose, ten times what the run orders of each, so no
order is held for overselling; a gateway without that endpoint gets a note and no stock). Between
the warm-up and the timed phase (``bench/intake_metrics.py`` runs the load generator with a pause
there) and after the load, the ``GET /metrics`` of every gateway process is read; the difference
gives ``rules_seconds`` over ``intake_seconds`` (both sums of the gateway's own histograms, wall
time per order) and the mean µs per order of each, for each run and for the median run, against
the target (< 15%).

``--database postgres`` runs the production shape instead: a throwaway, durable PostgreSQL server
(fsync, ``synchronous_commit`` and ``full_page_writes`` on; ``--pg-setting`` changes one for a
what-if, and every run prints the settings in force), a throwaway Redis (``GATEWAY_REDIS_URL``),
``--servers`` ``gateway serve`` processes (default 2), each on its own port and each relaying
outbox rows to arq, and ``--workers`` ``gateway worker`` processes (default 1) delivering into the
sandbox U8. ``--no-delivery`` starts no worker and no sandbox: the relays still queue the jobs in
Redis, nobody takes them. The load generator opens its connections round-robin over the servers'
ports (connection ``i`` to server ``i mod n``), as a load balancer in front of them would; the
baseline runs as the same number of processes behind the same spread. Each gateway run gets a
fresh database on the one PostgreSQL server; afterwards it must hold exactly as many orders as
there were 202 answers, and ``gateway audit verify`` must find the chain intact.

``--json FILE`` keeps every figure of every run, the rules' share among them.

Every process runs on 127.0.0.1 and is stopped by the run.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from intake_metrics import (
    TARGET_RULES_SHARE,
    WARMED_UP,
    describe,
    report_stock,
    rules_share,
    scrape,
    stock_items,
    warehouses,
)
from machine import machine_busy_seconds, tree_state
from pyspy_breakdown import report
from servers import (
    PG_REPORTED,
    PROFILE_RATE,
    BenchPostgres,
    Server,
    free_port,
    proc_cpu_seconds,
    profile_start,
    profile_stop,
    start_bench_postgres,
)

from tests.support.redis import start_redis

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SAMPLE = REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json"
BIN = Path(sys.executable).parent
TARGET_RPS = {"sqlite": 1000.0, "postgres": 2000.0}
TARGET_P99_MS = 50.0
# Ids far above the samples' own, so a benchmark order never collides with a sample.
ID_BASE = 4_100_000_000_000_000_000


# --------------------------------------------------------------------------- bodies


def build_bodies(count: int, *, first: int) -> list[bytes]:
    """``count`` copies of sample 02, each with its own tid and oids (and the promotions' ids that
    point at them, so scopes stay as in the sample)."""
    sample = msgspec.json.decode(SAMPLE.read_bytes())
    out = []
    for n in range(first, first + count):
        payload = copy.deepcopy(sample)
        trade = payload["trade_fullinfo_get_response"]["trade"]
        tid = ID_BASE + n * 100
        renumber = {trade["tid"]: tid}
        trade["tid"], trade["tid_str"] = tid, str(tid)
        for i, line in enumerate(trade["orders"]["order"], start=1):
            renumber[line["oid"]] = tid + i
            line["oid"], line["oid_str"] = tid + i, str(tid + i)
        for promo in trade["promotion_details"]["promotion_detail"]:
            promo["id"] = renumber.get(promo["id"], promo["id"])
        out.append(msgspec.json.encode(payload))
    return out


def run_load(
    urls: list[str],
    bodies_file: Path,
    args: argparse.Namespace,
    auth: str | None,
    between: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``loadgen.py`` over ``urls``; with ``between``, through ``intake_metrics.py`` (the same load
    generator, paused after its warm-up) and ``between()`` called in that pause."""
    env = dict(os.environ)
    env.pop("BENCH_AUTH", None)
    if auth:
        env["BENCH_AUTH"] = auth
    argv = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        *(arg for url in urls for arg in ("--url", url)),
        "--bodies",
        str(bodies_file),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--client",
        args.client,
    ]
    before, busy0 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    if between is None:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=2 * args.duration + 120, check=False)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        argv[1] = str(BENCH / "intake_metrics.py")
        returncode, stdout, stderr = run_paused(argv, env, between, timeout=2 * args.duration + 120)
    after, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    if returncode != 0:
        raise SystemExit(f"load generator failed ({returncode}):\n{stderr.decode()[-2000:]}")
    result = json.loads(stdout)
    result["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["machine_cpu_s"] = busy1 - busy0
    return result


def run_paused(
    argv: list[str], env: dict[str, str], between: Callable[[], None], *, timeout: float
) -> tuple[int, bytes, bytes]:
    """Run the paused load generator: wait for its ``WARMED_UP`` line on stderr, call
    ``between()``, let it go on (a line on its stdin), collect its output."""
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    assert proc.stderr is not None
    try:
        seen, marker = b"", WARMED_UP.encode() + b"\n"
        while marker not in seen:
            chunk = os.read(proc.stderr.fileno(), 4096)  # unbuffered: communicate() reads the rest
            if not chunk:
                break  # it ended before its warm-up did; its exit code and stderr say why
            seen += chunk
        if marker in seen:
            between()
        stdout, stderr = proc.communicate(input=b"go\n", timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, stdout, seen.replace(marker, b"") + stderr


# --------------------------------------------------------------------------- the runs


def run_baseline(bodies_file: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``--servers`` baseline processes, each on its own port, behind the same spread as the gateway."""
    ports = [free_port() for _ in range(args.servers)]
    servers: list[Server] = []
    try:
        for n, port in enumerate(ports):
            argv = [sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port)]
            servers.append(Server(f"baseline{n}", argv, dict(os.environ), tmp / f"baseline{n}.log"))
        for server, port in zip(servers, ports, strict=True):
            server.wait_http(f"http://127.0.0.1:{port}/health/live")
        cpu0 = sum(s.cpu_seconds() for s in servers)
        result = run_load([f"http://127.0.0.1:{p}/v1/orders/taobao" for p in ports], bodies_file, args, None)
        result["server_cpu_s"] = sum(s.cpu_seconds() for s in servers) - cpu0
    finally:
        for server in servers:
            server.stop()
    return result


def db_counts(db: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        by_state = dict(conn.execute("SELECT state, COUNT(*) FROM orders GROUP BY state").fetchall())
        outbox = dict(conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        attempts = conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM outbox").fetchone()[0]
    return {"orders": orders, "orders_by_state": by_state, "outbox_by_state": outbox, "delivery_attempts": attempts}


def wait_for_drain(db: Path, limit_s: float) -> dict[str, Any]:
    """After the load: how long the worker takes to deliver the backlog (up to ``limit_s``)."""
    start = time.monotonic()
    done0 = db_counts(db)["outbox_by_state"].get("done", 0)
    while True:
        counts = db_counts(db)["outbox_by_state"]
        left = counts.get("pending", 0) + counts.get("leased", 0)
        elapsed = time.monotonic() - start
        if left == 0 or elapsed >= limit_s:
            delivered = counts.get("done", 0) - done0
            return {"seconds": elapsed, "delivered": delivered, "left": left, "per_s": delivered / max(elapsed, 1e-9)}
        time.sleep(0.25)


def run_gateway(
    bodies_file: Path, preflight: bytes, tmp: Path, args: argparse.Namespace, stock: list[dict[str, Any]]
) -> dict[str, Any]:
    db = tmp / "bench.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    port = free_port()
    env.update(
        GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
    )
    env.update(dict(kv.split("=", 1) for kv in args.env))
    sandbox: Server | None = None
    with ExitStack() as stack:
        if args.no_delivery:
            env["GATEWAY_SANDBOX_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        else:
            sandbox_port = free_port()
            sandbox = Server(
                "sandbox",
                [str(BIN / "gateway"), "sandbox", "--port", str(sandbox_port)],
                env,
                tmp / "sandbox.log",
            )
            stack.callback(sandbox.stop)
            sandbox.wait_http(f"http://127.0.0.1:{sandbox_port}/_sandbox/u8/documents")
            env["GATEWAY_SANDBOX_URL"] = f"http://127.0.0.1:{sandbox_port}"
        auth, stock_auth = create_key(env), create_key(env, role="wms")
        gateway = Server("gateway", [str(BIN / "gateway"), "serve"], env, tmp / "gateway.log")
        stack.callback(gateway.stop)
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/health/live")
        stock_result = put_stock(base, stock_auth, stock)
        preflight_order(base, preflight, auth)

        profiler = profile_start(gateway.proc.pid, args.profile, args) if args.profile else None
        cpu0 = gateway.cpu_seconds()
        sandbox_cpu0 = sandbox.cpu_seconds() if sandbox else 0.0
        warm: list[list[dict[str, Any]]] = []
        result = run_load(
            [f"{base}/v1/orders/taobao"], bodies_file, args, auth, between=lambda: warm.append([scrape(base)])
        )
        result["server_cpu_s"] = gateway.cpu_seconds() - cpu0
        result["sandbox_cpu_s"] = (sandbox.cpu_seconds() - sandbox_cpu0) if sandbox else 0.0
        result["rules"] = rules_share(warm[0], [scrape(base)])
        result["stock"] = stock_result
        if profiler is not None:
            profile_stop(profiler)
        result["db_after_run"] = db_counts(db)
        if args.drain and not args.no_delivery:
            result["drain"] = wait_for_drain(db, args.drain)
            # Exactly one document per order: the sandbox keys sale orders by their code.
            docs = httpx.get(f"{env['GATEWAY_SANDBOX_URL']}/_sandbox/u8/documents", timeout=60).json()["documents"]
            codes = [d["code"] for d in docs if str(d.get("code", "")).startswith("GW")]
            result["drain"].update(documents=len(codes), distinct_codes=len(set(codes)))
        gateway.stop()
        result["db_after_stop"] = db_counts(db)
        result["audit"] = audit_verify(env)
    accepted = 1 + result["warmup"]["accepted_202"] + result["accepted_202"]
    result["expected_orders"] = accepted
    result["durable_ok"] = result["db_after_stop"]["orders"] == accepted and result["audit"]["ok"]
    result["mode"] = "no-delivery" if args.no_delivery else "delivery"
    return result


def cli(env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """``gateway ARGV…`` with ``env``; stops the benchmark when it fails."""
    done = subprocess.run(
        [str(BIN / "gateway"), *argv], env=env, capture_output=True, timeout=timeout, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"gateway {' '.join(argv)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return done


def audit_verify(env: dict[str, str]) -> dict[str, Any]:
    """``gateway audit verify`` on the run's database: exit code and its one line."""
    done = subprocess.run(
        [str(BIN / "gateway"), "audit", "verify"], env=env, capture_output=True, timeout=300, check=False, cwd=REPO
    )
    text = (done.stdout or done.stderr).decode().strip().splitlines()
    return {"ok": done.returncode == 0, "line": text[-1] if text else f"exit {done.returncode}"}


def create_key(env: dict[str, str], role: str = "platform") -> str:
    made = cli(env, "keys", "create", "--role", role, "--label", f"bench-{role}")
    return f"Bearer {made.stdout.decode().strip().splitlines()[-1]}"


def put_stock(base: str, auth: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Report the sample's SKUs in stock (``POST /v1/stock``) before the first order, so the oversell
    rule reads and reserves real levels; a gateway without the endpoint gets a note and none."""
    done = report_stock(base, auth, items)
    if not done["landed"]:
        print(
            f"  note: POST /v1/stock answered {done['status']}: this gateway has no stock endpoint;"
            " no stock reported, the stateful rules run without counts",
            flush=True,
        )
    return done


def preflight_order(base: str, preflight: bytes, auth: str) -> None:
    """One order before the load: it must be a plain 202 "accepted", or the figures mean nothing."""
    r = httpx.post(
        f"{base}/v1/orders/taobao",
        content=preflight,
        headers={"Authorization": auth, "Content-Type": "application/json"},
        timeout=30,
    )
    if r.status_code != 202 or r.json().get("status") != "accepted":
        raise SystemExit(f"pre-flight order answered {r.status_code} {r.text[:500]}")


# --------------------------------------------------------------------------- PostgreSQL


async def _pg_counts(dsn: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        orders = await conn.fetchval("SELECT COUNT(*) FROM orders")
        by_state = dict(await conn.fetch("SELECT state, COUNT(*) FROM orders GROUP BY state"))
        outbox = dict(await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        attempts = await conn.fetchval("SELECT COALESCE(SUM(attempts), 0) FROM outbox")
        audit = await conn.fetchval("SELECT COUNT(*) FROM audit_log")
    finally:
        await conn.close()
    return {
        "orders": orders,
        "orders_by_state": by_state,
        "outbox_by_state": outbox,
        "delivery_attempts": int(attempts),
        "audit_entries": audit,
    }


def pg_counts(dsn: str) -> dict[str, Any]:
    return asyncio.run(_pg_counts(dsn))


async def _pg_settings(dsn: str) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name", list(PG_REPORTED)
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] + (f" ({r['unit']})" if r["unit"] else "") for r in rows}


def pg_settings(dsn: str) -> dict[str, str]:
    return asyncio.run(_pg_settings(dsn))


async def _pg_statements(dsn: str, reset: bool) -> list[dict[str, Any]]:
    """``--pg-stats``: pg_stat_statements of the run's database, the costliest first (or reset)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return []
        rows = await conn.fetch(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
            " ORDER BY total_exec_time DESC LIMIT 15"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def pg_statements(dsn: str, *, reset: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_pg_statements(dsn, reset))


def wait_for_drain_pg(dsn: str, limit_s: float) -> dict[str, Any]:
    start = time.monotonic()
    done0 = pg_counts(dsn)["outbox_by_state"].get("done", 0)
    while True:
        counts = pg_counts(dsn)["outbox_by_state"]
        left = counts.get("pending", 0) + counts.get("leased", 0)
        elapsed = time.monotonic() - start
        if left == 0 or elapsed >= limit_s:
            delivered = counts.get("done", 0) - done0
            return {"seconds": elapsed, "delivered": delivered, "left": left, "per_s": delivered / max(elapsed, 1e-9)}
        time.sleep(0.5)


def run_gateway_pg(
    bodies_file: Path,
    preflight: bytes,
    tmp: Path,
    args: argparse.Namespace,
    stock: list[dict[str, Any]],
    pg: BenchPostgres,
    n: int,
) -> dict[str, Any]:
    """``--servers`` gateway processes on a fresh PostgreSQL database, relaying to arq on a fresh
    Redis; ``--workers`` arq workers delivering into the sandbox unless ``--no-delivery``."""
    database = f"bench_{n}"
    url = pg.create_database(database)
    dsn = pg.dsn(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATABASE_URL=url, GATEWAY_HOST="127.0.0.1")
    env.update(dict(kv.split("=", 1) for kv in args.env))
    sandbox: Server | None = None
    workers: list[Server] = []
    with ExitStack() as stack:
        redis = stack.enter_context(start_redis())
        env["GATEWAY_REDIS_URL"] = redis.url
        cli(env, "db", "upgrade")
        if args.no_delivery:
            env["GATEWAY_SANDBOX_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        else:
            sandbox_port = free_port()
            sandbox = Server(
                "sandbox", [str(BIN / "gateway"), "sandbox", "--port", str(sandbox_port)], env, tmp / "sandbox.log"
            )
            stack.callback(sandbox.stop)
            sandbox.wait_http(f"http://127.0.0.1:{sandbox_port}/_sandbox/u8/documents")
            env["GATEWAY_SANDBOX_URL"] = f"http://127.0.0.1:{sandbox_port}"
        auth, stock_auth = create_key(env), create_key(env, role="wms")
        ports = [free_port() for _ in range(args.servers)]
        servers: list[Server] = []
        for k, port in enumerate(ports):
            server = Server(
                f"gateway{k}", [str(BIN / "gateway"), "serve", "--port", str(port)], env, tmp / f"gateway{k}.log"
            )
            stack.callback(server.stop)
            servers.append(server)
        for server, port in zip(servers, ports, strict=True):
            server.wait_http(f"http://127.0.0.1:{port}/health/live")
        for k in range(0 if args.no_delivery else args.workers):
            worker = Server(f"worker{k}", [str(BIN / "gateway"), "worker"], env, tmp / f"worker{k}.log")
            stack.callback(worker.stop)
            workers.append(worker)
        if workers:
            deadline = time.monotonic() + 60
            check = [str(BIN / "gateway"), "worker", "--check"]
            while subprocess.run(check, env=env, capture_output=True, check=False).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no arq worker recorded its health within 60 s; see {tmp}/worker0.log")
                time.sleep(0.5)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        stock_result = put_stock(bases[0], stock_auth, stock)  # one database: one report for all
        preflight_order(bases[0], preflight, auth)

        profiler = profile_start(servers[0].proc.pid, args.profile, args) if args.profile else None
        processes = {"sandbox": [sandbox] if sandbox else [], "workers": workers}

        def cpu() -> dict[str, float]:
            out = {"servers": [s.cpu_seconds() for s in servers], "postgres": pg.cpu_seconds()}
            out.update({name: sum(p.cpu_seconds() for p in procs) for name, procs in processes.items()})
            out["redis"] = proc_cpu_seconds(redis.process.pid) if redis.process else 0.0
            return out

        if args.pg_stats:
            pg_statements(dsn, reset=True)
        cpu0 = cpu()
        warm: list[list[dict[str, Any]]] = []
        result = run_load(
            [f"{base}/v1/orders/taobao" for base in bases],
            bodies_file,
            args,
            auth,
            between=lambda: warm.append([scrape(base) for base in bases]),
        )
        cpu1 = cpu()
        result["rules"] = rules_share(warm[0], [scrape(base) for base in bases])
        result["stock"] = stock_result
        if args.pg_stats:
            result["pg_statements"] = pg_statements(dsn)
        if profiler is not None:
            profile_stop(profiler)
        result["server_cpu_each_s"] = [b - a for a, b in zip(cpu0["servers"], cpu1["servers"], strict=True)]
        result["server_cpu_s"] = sum(result["server_cpu_each_s"])
        for name in ("postgres", "redis", "sandbox", "workers"):
            result[f"{name}_cpu_s"] = cpu1[name] - cpu0[name]  # type: ignore[operator]
        result["db_after_run"] = pg_counts(dsn)
        if args.drain and workers:
            result["drain"] = wait_for_drain_pg(dsn, args.drain)
            docs = httpx.get(f"{env['GATEWAY_SANDBOX_URL']}/_sandbox/u8/documents", timeout=60).json()["documents"]
            codes = [d["code"] for d in docs if str(d.get("code", "")).startswith("GW")]
            result["drain"].update(documents=len(codes), distinct_codes=len(set(codes)))
        for server in servers:
            server.stop()
        for worker in workers:
            worker.stop()
        result["db_after_stop"] = pg_counts(dsn)
        result["audit"] = audit_verify(env)
    accepted = 1 + result["warmup"]["accepted_202"] + result["accepted_202"]
    result["expected_orders"] = accepted
    result["durable_ok"] = result["db_after_stop"]["orders"] == accepted and result["audit"]["ok"]
    result["mode"] = "no-delivery" if args.no_delivery else "delivery"
    return result


# --------------------------------------------------------------------------- report


OUR_CPU = ("server", "loadgen", "sandbox", "postgres", "redis", "workers")


def others_share(r: dict[str, Any]) -> float:
    """Share of the machine's CPUs used by processes outside the benchmark during its load."""
    ours = sum(r.get(f"{name}_cpu_s", 0.0) for name in OUR_CPU)
    wall = r["elapsed_s"] + r["warmup"]["elapsed_s"]
    return max(0.0, r["machine_cpu_s"] - ours) / (wall * (os.cpu_count() or 1))


def line(name: str, r: dict[str, Any]) -> str:
    cpu_ms = r["server_cpu_s"] / max(1, r["sent"] + r["warmup"]["sent"]) * 1000
    bad = sum(r["non_202"].values()) + sum(r["errors"].values())
    share = r.get("rules", {}).get("share")
    rules = "" if "rules" not in r else "     n/a" if share is None else f"{share * 100:7.1f}%"
    return (
        f"{name:12} {r['sent']:6d} {r['elapsed_s']:7.1f}s {r['rps']:8.0f} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f}"
        f" {r['p99_ms']:8.1f} {r['max_ms']:8.1f} {bad:6d} {cpu_ms:10.2f} {others_share(r) * 100:8.0f}%{rules}"
    )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=5000, help="timed requests per server run (default 5000)")
    ap.add_argument("--warmup", type=int, default=300, help="untimed requests first (default 300)")
    ap.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    ap.add_argument("--repeat", type=int, default=3, help="baseline, gateway, baseline, … runs each (default 3)")
    ap.add_argument("--duration", type=float, default=90.0, help="cap in seconds per phase (default 90)")
    ap.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="load generator client (see bench/loadgen.py)"
    )
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite", help="storage (default sqlite)")
    ap.add_argument("--servers", type=int, help="gateway (and baseline) processes: SQLite 1, PostgreSQL 2")
    ap.add_argument("--workers", type=int, default=1, help="PostgreSQL: arq delivery workers (default 1)")
    ap.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PostgreSQL: a server setting for a what-if run (e.g. synchronous_commit=off)",
    )
    ap.add_argument(
        "--pg-stats",
        action="store_true",
        help="PostgreSQL: load pg_stat_statements and print each run's costliest statements",
    )
    ap.add_argument(
        "--no-delivery",
        action="store_true",
        help="SQLite: ERP URL on a closed port, deliveries fail fast; PostgreSQL: no arq worker, no sandbox",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--profile", type=Path, help="py-spy the first gateway run, save the raw profile here, print where")
    ap.add_argument(
        "--env", action="append", default=[], metavar="GATEWAY_X=V", help="extra gateway setting (what-if runs)"
    )
    ap.add_argument(
        "--drain", type=float, default=0.0, metavar="S", help="after the load, wait up to S s for the backlog to drain"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, logs)")
    args = ap.parse_args()
    if not (1 <= args.requests <= 100_000 and 0 <= args.warmup <= 10_000 and 1 <= args.concurrency <= 512):
        ap.error("--requests 1..100000, --warmup 0..10000, --concurrency 1..512")
    if not (1 <= args.duration <= 600 and 1 <= args.repeat <= 9):
        ap.error("--duration 1..600, --repeat 1..9")
    if any(not kv.startswith("GATEWAY_") or "=" not in kv for kv in args.env):
        ap.error("--env takes GATEWAY_NAME=value")
    if any("=" not in kv for kv in args.pg_setting) or (args.pg_setting and args.database != "postgres"):
        ap.error("--pg-setting takes NAME=value, with --database postgres")
    if args.servers is None:
        args.servers = 2 if args.database == "postgres" else 1
    if not (1 <= args.servers <= 8 and 0 <= args.workers <= 8):
        ap.error("--servers 1..8, --workers 0..8")
    if args.database == "sqlite" and args.servers != 1:
        ap.error("SQLite has one writer process: --servers 1 (use --database postgres for more)")
    target_rps = TARGET_RPS[args.database]

    baselines: list[dict[str, Any]] = []
    gateways: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    pg: BenchPostgres | None = None
    settings: dict[str, str] = {}
    try:
        if args.database == "postgres":
            extra = {"shared_preload_libraries": "pg_stat_statements"} if args.pg_stats else {}
            pg = start_bench_postgres(extra | dict(kv.split("=", 1) for kv in args.pg_setting))
            settings = pg_settings(pg.dsn("postgres"))
        bodies = build_bodies(args.warmup + args.requests + 1, first=1)
        preflight, bodies = bodies[0], bodies[1:]
        bodies_file = tmp / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
        stock = stock_items(SAMPLE, 1 + len(bodies), warehouses())
        if pg is None:
            mode = "no-delivery (ERP on a closed port)" if args.no_delivery else "delivery (sandbox U8 EAI)"
            where = "SQLite, 1 gateway process"
        else:
            mode = (
                "no-delivery (relays queue jobs in Redis, no worker)"
                if args.no_delivery
                else f"delivery ({args.workers} arq worker(s), sandbox U8 EAI)"
            )
            where = f"PostgreSQL + Redis, {args.servers} gateway processes"
        print(f"tree: {tree_state()}")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
        print(
            f"ingest: {args.repeat} x ({args.requests} timed + {args.warmup} warm-up requests),"
            f" {args.concurrency} connections, {len(bodies[0])}-byte Taobao orders, {args.client} client,"
            f" {where}, mode {mode}; {os.cpu_count()} CPUs"
        )
        if settings:
            print("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        profile = args.profile
        for i in range(args.repeat):
            if not args.skip_baseline:
                baselines.append(run_baseline(bodies_file, tmp, args))
            run_dir = tmp / f"run{i + 1}"
            run_dir.mkdir()
            args.profile = profile if i == 0 else None  # one profile is enough, and it slows its run
            if pg is None:
                gateways.append(run_gateway(bodies_file, preflight, run_dir, args, stock))
            else:
                gateways.append(run_gateway_pg(bodies_file, preflight, run_dir, args, stock, pg, i + 1))
        args.profile = profile
    finally:
        if pg is not None:
            if args.keep:  # stopped, its folder (data, server.log) left in place
                pg._run("pg_ctl", "-D", str(pg.data_dir), "-m", "fast", "-w", "stop")
                print(f"kept {pg.root}")
            else:
                pg.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")

    print(
        f"\n{'server':12} {'sent':>6} {'time':>8} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8} {'non202':>6} {'cpu ms/req':>10} {'others':>9} {'rules':>7}"
    )
    for i in range(args.repeat):
        if baselines:
            print(line(f"baseline #{i + 1}", baselines[i]))
        print(line(f"gateway #{i + 1}", gateways[i]) + ("  (profiled)" if profile and i == 0 else ""))
    baseline = median_run(baselines) if baselines else None
    gateway = median_run(gateways[1:] if profile and len(gateways) > 1 else gateways)  # a profiled run is slower
    if args.repeat > 1:
        if baseline:
            print(line("baseline ~", baseline))
        print(line("gateway ~", gateway))
    print("~: the median run by req/s. cpu ms/req: the server's CPU over warm-up + timed requests;")
    print("others: the machine's CPUs used meanwhile by processes outside this benchmark;")
    print("rules: the gateway's rules_seconds over intake_seconds (its /metrics), timed requests only")
    if baseline:
        print(
            f"\nratio gateway/baseline (median runs): throughput {gateway['rps'] / baseline['rps']:.3f}x,"
            f" p99 {gateway['p99_ms'] / max(baseline['p99_ms'], 1e-9):.1f}x"
        )
    bad = 0
    for i, g in enumerate(gateways, start=1):
        wrong = sum(g["non_202"].values()) + sum(g["errors"].values())
        bad += wrong
        if wrong:
            print(f"gateway #{i}: answers other than 202: {g['non_202']} errors {g['errors']}")
            for status, text in g["non_202_samples"].items():
                print(f"  {status}: {text}")
        after, during = g["db_after_stop"], g["db_after_run"]
        same = after["orders"] == g["expected_orders"]
        print(
            f"gateway #{i}: database holds {after['orders']} orders for {g['expected_orders']} answers of 202"
            f" (warm-up and pre-flight included): {'OK' if same else 'MISMATCH'};"
            f" at the end of the load {during['orders_by_state']}, outbox {during['outbox_by_state']};"
            f" {g['audit']['line']}"
        )
        for st in g.get("pg_statements", []):
            query = " ".join(st["query"].split())
            print(
                f"  pg #{i}: {st['total_exec_time']:8.0f} ms {st['calls']:7d} calls"
                f" {st['total_exec_time'] / max(st['calls'], 1) * 1000:7.0f} us/call  {query[:150]}"
            )
        reported = g["stock"]
        print(
            f"gateway #{i}: {describe(g['rules'])}; stock: "
            + (
                f"{reported['items']} SKU/warehouse counts reported ({reported['answer']})"
                if reported["landed"]
                else f"none (POST /v1/stock answered {reported['status']})"
            )
        )
        if "drain" in g:
            d = g["drain"]
            print(
                f"gateway #{i}: after the load, {d['delivered']} documents delivered in {d['seconds']:.1f} s"
                f" ({d['per_s']:.0f}/s), {d['left']} left; the sandbox U8 holds {d['documents']} gateway"
                f" documents under {d['distinct_codes']} codes"
            )
    names = [name for name in OUR_CPU if f"{name}_cpu_s" in gateway]
    wall = gateway["elapsed_s"] + gateway["warmup"]["elapsed_s"]
    orders = gateway["sent"] + gateway["warmup"]["sent"]
    print(
        f"CPU in the median gateway run ({os.cpu_count()} CPUs, wall {wall:.1f} s warm-up + timed, {orders} orders):"
        + ", ".join(
            f" {'gateway' if n == 'server' else n} {gateway[f'{n}_cpu_s']:.1f} s"
            f" ({gateway[f'{n}_cpu_s'] / orders * 1000:.2f} ms/order)"
            for n in names
        )
        + f", others {others_share(gateway) * wall * (os.cpu_count() or 1):.1f} s"
    )
    if "server_cpu_each_s" in gateway:
        print("  per gateway process: " + ", ".join(f"{c:.1f} s" for c in gateway["server_cpu_each_s"]))
    ok_rps = gateway["rps"] >= target_rps
    ok_p99 = gateway["p99_ms"] < TARGET_P99_MS
    rules = gateway["rules"]
    if rules["share"] is not None and rules["rules_us_per_order"] is not None:
        # intake_seconds is wall time under --concurrency connections (queueing included): for scale,
        # the rules' wall time per order against the CPU the gateway spent per order.
        cpu_us = gateway["server_cpu_s"] / max(1, orders) * 1e6
        rules["gateway_cpu_us_per_order"] = cpu_us
        print(
            f"rules (median run): {rules['rules_us_per_order']:.1f} µs per order = {rules['share'] * 100:.1f}% of"
            f" intake's {rules['intake_us_per_order']:.0f} µs wall time per order, and"
            f" {rules['rules_us_per_order'] / cpu_us * 100:.1f}% of the gateway's {cpu_us:.0f} µs of CPU per order"
        )
    print(
        f"targets (median run): ≥ {target_rps:.0f} orders/s {'met' if ok_rps else 'NOT met'};"
        f" p99 < {TARGET_P99_MS:.0f} ms {'met' if ok_p99 else 'NOT met'};"
        f" {describe(gateway['rules'])}"
        + ("" if gateway["stock"]["landed"] else " (no stock reported: the gateway has no POST /v1/stock)")
    )
    if profile and profile.exists():
        first = gateways[0]
        requests = first["sent"] + first["warmup"]["sent"]
        print(f"\nwhere the gateway's time goes (run #1, py-spy {PROFILE_RATE} Hz over {requests} orders, {profile}):")
        print(report(profile, PROFILE_RATE, requests, first["server_cpu_s"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "ingest",
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "python": sys.version.split()[0],
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "tree": tree_state(),
                    "postgres_settings": settings,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "baseline_runs": baselines,
                    "gateway_runs": gateways,
                    "stock_items": stock,
                    "rules_share_median_run": gateway["rules"],
                    "rules_share_target": TARGET_RULES_SHARE,
                },
                indent=2,
            )
        )
    return 0 if all(g["durable_ok"] for g in gateways) and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
