"""A backlog drained into a legacy ERP at its capacity: the embedded queue and arq, with and
without faults, against the ERP's own capacity measured in the same run.

    .venv/bin/python bench/drain.py [--orders 20000] [--concurrency 4] [--service-ms 20]
                                    [--fault-rate 0.1] [--modes embedded,arq] [--workers 2] [--quick]

The sandbox U8 is set to serve at most ``--concurrency`` calls at once, each taking at least
``--service-ms``: its nominal capacity is ``concurrency / service_ms`` documents per second
(4 / 0.020 s = 200/s by default). The gateway's target is configured with the same concurrency
limit, so it can at best keep every one of those slots busy.

1. Baseline, side by side: a minimal asyncio HTTP/1.1 client drives a fresh sandbox directly with
   exactly ``concurrency`` calls in flight (pre-built U8 EAI sale orders, rendered by the gateway's
   own dictionary code), which gives the capacity the sandbox really has on this machine. With
   ``--fault-rate`` it drives it again with that share of HTTP 500s and the same exactly-once
   protocol as the gateway (after a 500 the outcome is unknown: look the code up, then re-send),
   which gives the best documents per second a client can get through those faults.
2. Per mode (``embedded``: ``gateway serve`` on SQLite with its embedded worker; ``arq``:
   ``gateway serve`` as intake and outbox relay plus ``--workers`` ``gateway worker`` processes, on
   Redis and PostgreSQL), without faults and with ``--fault-rate`` HTTP 500s (seeded):

   * fresh sandbox, database (and Redis); ``gateway serve`` starts and the operator stops the
     target's line (``POST /v1/targets/u8-demo/stop``), so nothing is delivered while the backlog
     is built;
   * ``--orders`` Taobao orders are accepted over HTTP (``bench/loadgen.py``, 32 connections);
   * arq: the workers are started and waited for (they honour the stopped line);
   * the sandbox's capacity and faults are set (its counters restart), then the line is resumed
     (``POST /v1/targets/u8-demo/resume``): the clock starts;
   * the clock stops at the end of the last ERP call (the sandbox's call log), once the gateway's
     backlog is empty. Checked afterwards: the sandbox U8 holds one document per order
     (count == distinct codes == orders), and at no time more calls than ``concurrency`` arrived
     at once (``peak_open``).

Throughput is reported as documents per second and as a share of the nominal capacity and of the
measured direct-drive capacity (and, with faults, of the direct-drive figure with faults). The
ERP's busy share (calls it served per second over its capacity) tells apart time the ERP sat idle
from calls spent on faults and look-ups. Targets: ≥ 95% of capacity without faults, ≥ 85% with
faults, zero duplicate documents.

Every process runs on 127.0.0.1 and is stopped by the run; request loops are bounded in count
and time. ``--json`` (default ``bench/results/drain.json``) keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from ingest import build_bodies
from loadgen import RawConnection
from machine import machine_busy_seconds, tree_state
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from servers import Server, free_port

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))  # tests.support: the throwaway Redis and PostgreSQL servers

TARGET = "u8-demo"
TARGET_CLEAN = 0.95  # share of capacity without faults
TARGET_FAULTS = 0.85  # share of capacity with faults
INGEST_CONNECTIONS = 32
FAULT_SEED = 20261123
RETRY_DELAY_S = 0.2  # first retry and look-up delay after an HTTP 500
CIRCUIT_THRESHOLD = 10  # consecutive failures that open the target's circuit
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# --------------------------------------------------------------------------- configuration


def bench_config(args: argparse.Namespace, mode: str = "arq") -> str:
    """The gateway configuration of the run: the bundled demo one, with the target's limits,
    retry policy and circuit set for an ERP of ``args.concurrency`` slots and random HTTP 500s."""
    stop_line = (
        """# The run stops and resumes the line by hand (POST /v1/targets/u8-demo/stop, /resume); the backlog
# never stops it by itself. The arq workers read the line's state every check_interval_s: how soon
# they see the resume. (The embedded worker shares a process with the API: it sees it at once.)
[targets.u8-demo.stop_line]
max_backlog = 1000000000
check_interval_s = 0.5

"""
        if mode == "arq"
        else ""
    )
    demo = (REPO / "gateway" / "demo_config.toml").read_text(encoding="utf-8")
    head, _, _ = demo.partition("[targets.u8-demo.retry]")
    head = head.replace("concurrency = 2", f"concurrency = {args.concurrency}")
    rest = demo.partition("[rules]")[2]
    return f"""{head}# The gateway never has more calls open at the ERP than the ERP serves at once: with the
# same number as the sandbox's concurrency, no call ever waits in the ERP's own queue.
[targets.u8-demo.limits]
concurrency = {args.concurrency}
permit_ttl_s = 30

# U8 answers HTTP 500 when it fails mid-request, so a 500 is an unknown outcome: the next attempt
# first looks the code up, then re-sends. Its delay is unknown_outcome_delay_s (the look-up does
# not wait for backoff); other retryable failures start at first_delay_s. Both are short: with
# 10% random 500s the ERP is up, and a slot left idle is capacity lost. 12 attempts: an attempt
# after a 500 is a look-up and a send, failing 19% of the time, so a dead letter from random 10%
# faults takes 0.1 x 0.19^11, about 1e-9 per document.
[targets.u8-demo.retry]
first_delay_s = {RETRY_DELAY_S}
factor = 2.0
cap_s = 10.0
max_attempts = 12
unknown_outcome_delay_s = {RETRY_DELAY_S}

{stop_line}# The circuit opens after this many consecutive failures. With independent 10% faults a run of
# k failures among N calls has a chance of about N * 0.9 * 0.1^k: for ~25,000 calls that is 2e-1
# for k = 5 (the default would trip now and then), 2e-4 for 8, 2e-6 for 10. A real outage
# still opens it after 10 failures, which at 200 calls/s is 50 ms.
[targets.u8-demo.circuit]
failure_threshold = {CIRCUIT_THRESHOLD}
open_seconds = 5.0

[rules]{rest}"""


# --------------------------------------------------------------------------- direct drive


@dataclass
class DirectDocs:
    codes: list[str]
    submits: list[bytes]
    queries: list[bytes]


def direct_documents(count: int, config_file: Path) -> DirectDocs:
    """``count`` U8 EAI sale orders rendered by the gateway's own code (dictionary, value tables,
    XML writer), each with its own code, and the look-up query of each."""
    from adapters.u8.eai_xml import build_query, build_request
    from gateway.config import load_config
    from gateway.document import build_document
    from gateway.intake import translate
    from gateway.ports import OrderRecord
    from gateway.runtime import load_runtime

    cfg = load_config(str(config_file), env={"GATEWAY_SANDBOX_URL": "http://127.0.0.1:9"})
    cfg = msgspec.structs.replace(cfg, targets={TARGET: msgspec.structs.replace(cfg.targets[TARGET], code_prefix="DD")})
    runtime = load_runtime(cfg)
    target = cfg.targets[TARGET]
    assert target.sender
    out = DirectDocs([], [], [])
    for n, body in enumerate(build_bodies(count, first=9_000_000), start=1):
        order, _ = translate("taobao", msgspec.json.decode(body), runtime, shop_header=None)
        record = OrderRecord(
            id=f"direct-{n}",
            seq=n,
            platform="taobao",
            shop_id=order.shop_id,
            platform_order_id=str(n),
            platform_version=None,
            state="accepted",
            canonical=msgspec.to_builtins(order),
            mapping_version="",
            rules_version="",
            payload_sha256="",
        )
        doc = build_document(record, TARGET, target, runtime)
        out.codes.append(doc.code)
        out.submits.append(build_request(doc, sender=target.sender))
        out.queries.append(build_query(doc.code, sender=target.sender))
    return out


async def drive(url: str, docs: DirectDocs, lanes: int, limit_s: float) -> dict[str, Any]:
    """Each document once, over exactly ``lanes`` keep-alive connections, each with one call in
    flight. After an HTTP 500 the outcome is unknown: query the code, then re-send if absent."""
    from adapters.u8.eai_xml import parse_query_reply, parse_reply

    calls = 0
    faults = 0
    done = 0
    it = iter(range(len(docs.codes)))
    deadline = time.monotonic() + limit_s

    async def lane(conn: RawConnection) -> None:
        nonlocal calls, faults, done
        for i in it:
            unknown = False
            while time.monotonic() < deadline:
                if unknown:
                    status, answer = await conn.send(docs.queries[i])
                    calls += 1
                    if status >= 500:
                        faults += 1
                        continue
                    found = [o for o in parse_query_reply(answer) if str(o.get("code", "")).strip() == docs.codes[i]]
                    if found:
                        break
                status, answer = await conn.send(docs.submits[i])
                calls += 1
                if status >= 500:
                    faults += 1
                    unknown = True
                    continue
                items = parse_reply(answer)
                if status != 200 or len(items) != 1 or items[0].succeed != "0":
                    raise SystemExit(f"direct drive: U8 refused {docs.codes[i]}: {status} {answer[:300]!r}")
                break
            else:
                return
            done += 1

    headers = {"Content-Type": "application/xml; charset=utf-8"}
    conns = [RawConnection(url, headers, 30.0) for _ in range(lanes)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(lane(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    elapsed = time.perf_counter() - started
    return {"documents": done, "calls": calls, "faults": faults, "seconds": elapsed, "per_s": done / elapsed}


def run_direct(name: str, docs: DirectDocs, fault_rate: float, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    with sandbox_server(tmp / f"sandbox-{name}.log") as sandbox:
        set_capacity(sandbox, args)
        if fault_rate:
            set_faults(sandbox, fault_rate)
        limit = max(60.0, 10 * len(docs.codes) / capacity(args))
        try:
            from uvloop import run as run_loop
        except ImportError:
            run_loop = asyncio.run
        busy0, cpu0, sandbox0 = machine_busy_seconds(), time.process_time(), sandbox.server.cpu_seconds()
        result = run_loop(drive(sandbox.url + "/U8EAI/import.asp", docs, args.concurrency, limit))
        result["client_cpu_s"] = time.process_time() - cpu0
        result["machine_cpu_s"] = machine_busy_seconds() - busy0
        result["sandbox_cpu_s"] = sandbox.server.cpu_seconds() - sandbox0
        ours = result["client_cpu_s"] + result["sandbox_cpu_s"]
        result["others_share"] = max(0.0, result["machine_cpu_s"] - ours) / (result["seconds"] * (os.cpu_count() or 1))
        cap = httpx.get(f"{sandbox.url}/_sandbox/capacity", timeout=30).json()["u8"]
        result["served"], result["peak_open"] = cap["served"], cap["peak_open"]
    result.update(name=name, fault_rate=fault_rate, load=loadavg())
    return result


# --------------------------------------------------------------------------- processes


@dataclass
class Sandbox:
    server: Server
    url: str


@contextlib.contextmanager
def sandbox_server(log: Path) -> Iterator[Sandbox]:
    port = free_port()
    server = Server("sandbox", [str(BIN / "gateway"), "sandbox", "--port", str(port)], gateway_env(), log)
    try:
        server.wait_http(f"http://127.0.0.1:{port}/_sandbox/capacity")
        yield Sandbox(server, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL with the benchmarks' durable settings when ``servers`` has them (the
    test suite's server runs with fsync off)."""
    try:
        from servers import start_bench_postgres
    except ImportError:
        from tests.support.postgres import start_postgres

        with start_postgres() as server:
            yield server
        return
    server = start_bench_postgres({})
    try:
        yield server
    finally:
        server.stop()


def gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def capacity(args: argparse.Namespace) -> float:
    return args.concurrency / (args.service_ms / 1000)


def set_capacity(sandbox: Sandbox, args: argparse.Namespace) -> None:
    body = {"system": "u8", "concurrency": args.concurrency, "service_ms": args.service_ms}
    httpx.post(f"{sandbox.url}/_sandbox/capacity", json=body, timeout=30).raise_for_status()


def set_faults(sandbox: Sandbox, rate: float) -> None:
    body = {"system": "u8", "mode": "http500", "rate": rate, "seed": FAULT_SEED}
    httpx.post(f"{sandbox.url}/_sandbox/faults", json=body, timeout=30).raise_for_status()


def cli(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [str(BIN / "gateway"), *argv], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"gateway {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def new_key(env: dict[str, str], role: str) -> str:
    return cli(env, "keys", "create", "--role", role, "--label", "bench-drain").strip().splitlines()[-1]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def profile(server: Server, run_dir: Path, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy (raw, 100 Hz) on the delivering process for the drain; stopped with SIGINT."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        console.print("  --profile: py-spy is not on PATH (pip install py-spy); no profile taken")
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    argv = [py_spy, "record", "--pid", str(server.proc.pid), "--rate", "100", "--format", "raw", "--nonblocking"]
    argv += ["--output", str(run_dir / "profile.pyspy")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the clock starts
    return proc


def wait_log(server: Server, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}; see {server.log}")
        if text in server.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise SystemExit(f"{server.name} did not log {text!r} within {timeout:.0f} s; see {server.log}")


# --------------------------------------------------------------------------- one drain


@dataclass
class Phase:
    mode: str  # embedded | arq
    fault_rate: float
    name: str = ""


def ingest(base: str, platform_key: str, bodies_file: Path) -> dict[str, Any]:
    env = dict(os.environ, BENCH_AUTH=f"Bearer {platform_key}")
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--url", f"{base}/v1/orders/taobao", "--bodies"]
    argv += [str(bodies_file), "--concurrency", str(INGEST_CONNECTIONS), "--warmup", "0", "--duration", "600"]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def target_view(client: httpx.Client) -> dict[str, Any]:
    items = client.get("/v1/targets/").raise_for_status().json()["items"]
    return next(i for i in items if i["target"] == TARGET)


def erp_timeline(sandbox: Sandbox) -> dict[str, float]:
    """Share of the drain's time with 0, 1, … calls at the ERP, from the sandbox's call log (its
    newest 20,000 calls; fetching it is heavy, hence ``--timeline``)."""
    calls = httpx.get(f"{sandbox.url}/_sandbox/calls", params={"system": "u8"}, timeout=300).json()["calls"]
    events = sorted(
        (parse_at(c["at"]) + end * c["ms"] / 1000, -1 if end else 1)
        for c in calls
        if c["method"] == "POST"
        for end in (0, 1)
    )
    shares: dict[int, float] = {}
    level, last = 0, events[0][0] if events else 0.0
    for at, step in events:
        shares[level] = shares.get(level, 0.0) + at - last
        level, last = level + step, at
    total = sum(shares.values()) or 1.0
    return {str(k): round(v / total, 4) for k, v in sorted(shares.items())}


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (Linux /proc; 0 when gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_ops(env: dict[str, str]) -> dict[str, int]:
    """Commands Redis has processed and transactions PostgreSQL has committed so far (arq runs)."""
    out: dict[str, int] = {}
    if env.get("GATEWAY_REDIS_URL"):
        import redis

        with closing(redis.Redis.from_url(env["GATEWAY_REDIS_URL"])) as r:
            out["redis_commands"] = int(r.info("stats")["total_commands_processed"])
            for name, stat in r.info("commandstats").items():
                out[f"redis:{name.removeprefix('cmdstat_')}"] = int(stat["calls"])
    url = env.get("GATEWAY_DATABASE_URL", "")
    if url.startswith("postgresql"):
        import asyncpg

        async def counts() -> tuple[int, int]:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                q = "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()"
                row = await conn.fetchrow(q)
                return int(row[0]), int(row[1])
            finally:
                await conn.close()

        out["pg_commits"], out["pg_sessions"] = asyncio.run(counts())
    return out


def db_figures(url: str) -> dict[str, Any]:
    """Outbox states, delivery attempts and dead letters, straight from the database."""
    queries = {
        "outbox": "SELECT state, COUNT(*) FROM outbox GROUP BY state",
        "attempts": "SELECT COALESCE(SUM(attempts), 0) FROM outbox",
        "dead_letters": "SELECT COUNT(*) FROM dead_letters",
        "orders": "SELECT state, COUNT(*) FROM orders GROUP BY state",
    }
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            rows = {k: conn.execute(q).fetchall() for k, q in queries.items()}
    else:
        import asyncpg

        async def fetch() -> dict[str, Any]:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in queries.items()}
            finally:
                await conn.close()

        rows = asyncio.run(fetch())
    return {
        "outbox": dict(rows["outbox"]),
        "attempts": rows["attempts"][0][0],
        "dead_letters": rows["dead_letters"][0][0],
        "orders": dict(rows["orders"]),
    }


def parse_at(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


def run_phase(
    phase: Phase, bodies_file: Path, config_file: Path, tmp: Path, args: argparse.Namespace, pg: Any
) -> dict[str, Any]:
    from tests.support.redis import start_redis

    run_dir = tmp / phase.name
    run_dir.mkdir()
    orders = args.orders
    with ExitStack() as stack:
        sandbox = stack.enter_context(sandbox_server(run_dir / "sandbox.log"))
        port = free_port()
        env = gateway_env(
            GATEWAY_CONFIG=str(config_file.with_name(f"gateway-{phase.mode}.toml")),
            GATEWAY_SANDBOX_URL=sandbox.url,
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_PORT=str(port),
        )
        if phase.mode == "arq":
            redis = stack.enter_context(start_redis())
            env.update(GATEWAY_DATABASE_URL=pg.create_database(), GATEWAY_REDIS_URL=redis.url)
            cli(env, "db", "upgrade")
        else:
            env["GATEWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{run_dir / 'gateway.db'}"
        env.update(dict(kv.split("=", 1) for kv in args.env))
        platform_key, it_key = new_key(env, "platform"), new_key(env, "it")
        serve = Server("gateway serve", [str(BIN / "gateway"), "serve"], env, run_dir / "serve.log")
        stack.callback(serve.stop)
        base = f"http://127.0.0.1:{port}"
        serve.wait_http(f"{base}/health/live")
        it = stack.enter_context(httpx.Client(base_url=base, headers={"Authorization": f"Bearer {it_key}"}, timeout=60))

        # The backlog: the line is stopped first, so nothing is delivered while it builds up.
        it.post(f"/v1/targets/{TARGET}/stop").raise_for_status()
        t = time.monotonic()
        load = ingest(base, platform_key, bodies_file)
        ingest_s = time.monotonic() - t
        if load["accepted_202"] != orders:
            raise SystemExit(f"{phase.name}: {load['accepted_202']} of {orders} orders accepted: {load['non_202']}")
        view = target_view(it)
        if view["backlog"] != orders or view["stop_line"]["state"] != "stopped":
            raise SystemExit(f"{phase.name}: expected a stopped line with {orders} waiting, got {view}")

        workers: list[Server] = []
        if phase.mode == "arq":
            for n in range(args.workers):
                w = Server(f"worker {n + 1}", [str(BIN / "gateway"), "worker"], env, run_dir / f"worker{n + 1}.log")
                stack.callback(w.stop)
                workers.append(w)
            for w in workers:
                wait_log(w, "arq worker started", 60)
        meters = {p.name: p.cpu_seconds for p in [serve, *workers, sandbox.server]}
        if phase.mode == "arq":
            meters["redis"] = lambda: pid_cpu_seconds(redis.process.pid if redis.process else 0)
            if hasattr(pg, "cpu_seconds"):
                meters["postgres"] = pg.cpu_seconds

        # Delivery is allowed from here: counters restart, faults on, the line resumes.
        set_capacity(sandbox, args)
        if phase.fault_rate:
            set_faults(sandbox, phase.fault_rate)
        load_before = loadavg()
        cpu0 = {name: meter() for name, meter in meters.items()}
        ops0 = store_ops(env)
        busy0 = machine_busy_seconds()
        profiler = profile(workers[0] if workers else serve, run_dir, args) if args.profile else None
        t0_wall, t0 = time.time(), time.monotonic()
        it.post(f"/v1/targets/{TARGET}/resume").raise_for_status()
        limit_s = max(120.0, 5 * orders / capacity(args))
        backlog = watch(phase, it, sandbox, orders, t0, limit_s)
        wall = time.monotonic() - t0
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            shutil.copy(run_dir / "profile.pyspy", args.profile / f"{phase.name}.pyspy")
        cpu = {name: meter() - cpu0[name] for name, meter in meters.items()}
        ops = {k: v - ops0.get(k, 0) for k, v in store_ops(env).items()}
        busy = machine_busy_seconds() - busy0

        calls = httpx.get(f"{sandbox.url}/_sandbox/calls", params={"limit": 64}, timeout=60).json()["calls"]
        last_end = max(parse_at(c["at"]) + c["ms"] / 1000 for c in calls) if calls else time.time()
        cap = httpx.get(f"{sandbox.url}/_sandbox/capacity", timeout=30).json()["u8"]
        timeline = erp_timeline(sandbox) if args.timeline else None
        time.sleep(0.5)  # a duplicate, if any, would arrive now
        docs = httpx.get(f"{sandbox.url}/_sandbox/u8/documents", timeout=120).json()["documents"]
        codes = [str(d.get("code", "")) for d in docs if str(d.get("code", "")).startswith("GW")]
        figures = db_figures(env["GATEWAY_DATABASE_URL"])
    seconds = last_end - t0_wall
    delivered = len(set(codes))
    return {
        "name": phase.name,
        "mode": phase.mode,
        "fault_rate": phase.fault_rate,
        "orders": orders,
        "workers": len(workers),
        "ingest_s": ingest_s,
        "ingest_per_s": orders / ingest_s,
        "left": backlog,
        "seconds": seconds,
        "watched_s": wall,
        "per_s": delivered / seconds if seconds > 0 else 0.0,
        "documents": len(codes),
        "distinct_codes": delivered,
        "calls": cap["served"],
        "peak_open": cap["peak_open"],
        "peak_in_flight": cap["peak_in_flight"],
        "db": figures,
        "cpu_s": cpu,
        "store_ops": ops,
        "erp_in_flight_share": timeline,
        "machine_cpu_s": busy,
        "others_share": max(0.0, busy - sum(cpu.values())) / (wall * (os.cpu_count() or 1)),
        "load_before": load_before,
        "load_after": loadavg(),
    }


def watch(phase: Phase, it: httpx.Client, sandbox: Sandbox, orders: int, t0: float, limit_s: float) -> int:
    """Until the target's backlog is empty (or ``limit_s``): progress on the terminal, or a line
    every 10 s when the output is not one. Returns the backlog left."""
    live = console.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.0f} docs/s  ERP calls {task.fields[calls]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
    )
    backlog = orders
    next_line = 10.0
    with progress:
        task = progress.add_task(f"  {phase.name:16}", total=orders, rate=0.0, calls=0)
        while True:
            time.sleep(0.5)
            backlog = target_view(it)["backlog"]
            served = httpx.get(f"{sandbox.url}/_sandbox/capacity", timeout=30).json()["u8"]["served"]
            elapsed = time.monotonic() - t0
            done = orders - backlog
            progress.update(task, completed=done, rate=done / elapsed, calls=served)
            if not live and elapsed >= next_line:
                console.print(f"  {phase.name}: {done}/{orders} in {elapsed:.0f} s ({done / elapsed:.0f}/s)")
                next_line += 10.0
            if backlog == 0 or elapsed > limit_s:
                return backlog


# --------------------------------------------------------------------------- report


def share(x: float, of: float) -> str:
    return f"{x / of * 100:.1f}%" if of else "-"


def report(direct: dict[str, dict[str, Any]], runs: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    nominal = capacity(args)
    clean = direct.get("direct")
    table = Table(title=f"Drain of {args.orders:,} orders into U8 at {args.concurrency} x {args.service_ms:g} ms")
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
            "-",
            f"{d['others_share'] * 100:.0f}%" if "others_share" in d else "-",
            d["load"],
        )
    ok = True
    for r in runs:
        faulted = r["fault_rate"] > 0
        goal = TARGET_FAULTS if faulted else TARGET_CLEAN
        dup = r["documents"] - r["distinct_codes"]
        complete = r["documents"] == r["distinct_codes"] == r["orders"]
        ok &= complete and not r["db"]["dead_letters"] and r["per_s"] >= goal * nominal
        ok &= r["peak_open"] <= args.concurrency
        faulted_direct = direct.get("direct+faults")
        table.add_row(
            r["name"],
            f"{r['documents']:,}" + ("" if complete else " !"),
            f"{r['seconds']:.1f}",
            f"{r['per_s']:.1f}",
            share(r["per_s"], nominal),
            share(r["per_s"], clean["per_s"]) if clean else "-",
            share(r["per_s"], faulted_direct["per_s"]) if faulted and faulted_direct else "-",
            share(r["calls"] / r["seconds"], nominal),
            f"{r['calls'] / max(r['documents'], 1):.3f}",
            str(r["peak_open"]),
            str(dup),
            f"{r['others_share'] * 100:.0f}%",
            r["load_before"],
        )
    console.print()
    console.print(table)
    console.print(
        f"nominal capacity {nominal:.0f} docs/s ({args.concurrency} slots / {args.service_ms:g} ms);"
        + (f" measured direct drive {clean['per_s']:.1f} docs/s" if clean else "")
        + (
            f", with {args.fault_rate:.0%} HTTP 500s {direct['direct+faults']['per_s']:.1f} docs/s"
            if "direct+faults" in direct
            else ""
        )
    )
    console.print(
        "ERP busy: calls served per second over the nominal capacity (a 500 and a look-up take a slot"
        " like a document); calls/doc: ERP calls per document; peak open: most calls at the ERP at once;"
        " dup: documents beyond one per code; others: CPU used by processes outside the run; load: 1/5/15-min"
        " load average when the drain started"
    )
    for r in runs:
        goal = TARGET_FAULTS if r["fault_rate"] else TARGET_CLEAN
        met = r["per_s"] >= goal * nominal
        check = "OK" if r["documents"] == r["distinct_codes"] == r["orders"] else "MISMATCH"
        console.print(
            f"{r['name']}: {r['distinct_codes']:,} documents under {r['distinct_codes']:,} codes"
            f" ({r['documents']:,} in all) for {r['orders']:,} orders: {check};"
            f" target ≥ {goal:.0%} of capacity {'met' if met else 'NOT met'};"
            f" ingest {r['ingest_per_s']:.0f} orders/s; attempts {r['db']['attempts']:,},"
            f" dead letters {r['db']['dead_letters']}; CPU "
            + ", ".join(f"{k} {v:.0f} s" for k, v in r["cpu_s"].items())
            + f" over {r['watched_s']:.0f} s"
            + "".join(
                f"; {k.replace('_', ' ')}/doc {v / max(r['documents'], 1):.1f}"
                for k, v in r["store_ops"].items()
                if not k.startswith("redis:")
            )
        )
        if r["erp_in_flight_share"]:
            shares = ", ".join(f"{k}: {v:.1%}" for k, v in r["erp_in_flight_share"].items())
            console.print(f"  calls at the ERP at once, share of the drain's time: {shares}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=20_000, help="backlog per run (default 20000)")
    ap.add_argument("--concurrency", type=int, default=4, help="the sandbox U8's slots and the target's limit (4)")
    ap.add_argument("--service-ms", type=float, default=20.0, help="the sandbox U8's time per call (20)")
    ap.add_argument("--fault-rate", type=float, default=0.1, help="share of HTTP 500s in the faulted runs (0.1)")
    ap.add_argument("--modes", default="embedded,arq", help="embedded, arq or both (default embedded,arq)")
    ap.add_argument("--workers", type=int, default=2, help="gateway worker processes in arq mode (2)")
    ap.add_argument("--direct", type=int, help="documents per direct-drive baseline (default: orders / 5, ≥ 1000)")
    ap.add_argument("--no-faults", action="store_true", help="skip the faulted runs")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2000 orders, 1000 direct documents")
    ap.add_argument(
        "--env", action="append", default=[], metavar="GATEWAY_X=V", help="extra gateway setting (what-if runs)"
    )
    ap.add_argument("--json", type=Path, default=BENCH / "results" / "drain.json", help="where to write the figures")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, logs)")
    ap.add_argument(
        "--timeline", action="store_true", help="also read the whole ERP call log: time share per calls in flight"
    )
    ap.add_argument("--profile", type=Path, help="py-spy the delivering process (serve, or worker 1) into DIR")
    args = ap.parse_args()
    if args.quick:
        args.orders = min(args.orders, 2000)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("embedded", "arq") for m in modes):
        ap.error("--modes takes embedded, arq or embedded,arq")
    if not (100 <= args.orders <= 200_000 and 1 <= args.concurrency <= 64 and 1 <= args.service_ms <= 10_000):
        ap.error("--orders 100..200000, --concurrency 1..64, --service-ms 1..10000")
    if not (0 <= args.fault_rate < 0.5 and 1 <= args.workers <= 8):
        ap.error("--fault-rate 0..0.5, --workers 1..8")
    if any(not kv.startswith("GATEWAY_") or "=" not in kv for kv in args.env):
        ap.error("--env takes GATEWAY_NAME=value")
    direct_count = args.direct or (1000 if args.quick else max(1000, args.orders // 5))
    fault_rates = [0.0] if args.no_faults or not args.fault_rate else [0.0, args.fault_rate]

    tmp = Path(tempfile.mkdtemp(prefix="gw-drain-"))
    direct: dict[str, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    try:
        config_file = tmp / "gateway.toml"
        config_file.write_text(bench_config(args), encoding="utf-8")
        for mode in modes:
            (tmp / f"gateway-{mode}.toml").write_text(bench_config(args, mode), encoding="utf-8")
        bodies_file = tmp / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(build_bodies(args.orders, first=1)) + b"\n")
        console.print(f"tree: {tree_state()}; {os.cpu_count()} CPUs; load {loadavg()}")
        console.print(
            f"drain: {args.orders:,} orders per run into the sandbox U8 at {args.concurrency} calls x"
            f" {args.service_ms:g} ms (nominal {capacity(args):.0f} docs/s); modes {', '.join(modes)}"
            + (f", {args.workers} arq workers" if "arq" in modes else "")
            + (f"; faults: {args.fault_rate:.0%} HTTP 500" if len(fault_rates) > 1 else "")
        )
        if len(fault_rates) > 1:
            calls, p = 1.25 * args.orders, args.fault_rate
            console.print(
                f"target: limits.concurrency {args.concurrency}; a 500 is an unknown outcome, retried after"
                f" {RETRY_DELAY_S:g} s with a look-up first; circuit opens after {CIRCUIT_THRESHOLD} failures in a"
                f" row: with {p:.0%} random 500s over ~{calls:,.0f} calls the chance of such a run is"
                f" ~{calls * (1 - p) * p**CIRCUIT_THRESHOLD:.0e} (threshold 5: ~{calls * (1 - p) * p**5:.0e})"
            )
        docs = direct_documents(direct_count, config_file)
        for rate in fault_rates:
            name = "direct" if not rate else "direct+faults"
            console.print(f"  {name}: {direct_count:,} documents at exactly {args.concurrency} calls in flight …")
            direct[name] = run_direct(name, docs, rate, tmp, args)
            d = direct[name]
            console.print(f"  {name}: {d['per_s']:.1f} docs/s ({d['calls']:,} calls, {d['faults']} HTTP 500s)")
        with ExitStack() as stack:
            pg = None
            if "arq" in modes:
                pg = stack.enter_context(postgres())
            for mode in modes:
                for rate in fault_rates:
                    phase = Phase(mode, rate, f"{mode}" + (f"+{rate:.0%} 500s" if rate else ""))
                    phase.name = re.sub(r"[^A-Za-z0-9+%-]", "", phase.name.replace(" ", "-"))
                    console.print(f"  {phase.name}: backlog of {args.orders:,} with the line stopped …")
                    runs.append(run_phase(phase, bodies_file, config_file, tmp, args, pg))
    finally:
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = report(direct, runs, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "drain",
                "at": started.isoformat(timespec="seconds"),
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "tree": tree_state(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "nominal_per_s": capacity(args),
                "direct": direct,
                "runs": runs,
            },
            indent=2,
        )
    )
    console.print(f"figures: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
