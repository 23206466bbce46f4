"""One drain of one transport in one mode: a fresh sandbox and gateway, a backlog built with the
target's line stopped, the line resumed, the clock stopped at the ERP's last call once the
gateway's backlog is empty; then what the sandbox holds (one document per order).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from drain_config import (
    BENCH,
    BIN,
    INGEST_CONNECTIONS,
    REPO,
    Sandbox,
    Transport,
    capacity,
    capacity_view,
    console,
    documents,
    gateway_env,
    loadavg,
    sandbox_server,
    set_capacity,
    set_faults,
)
from drain_figures import call_profile, db_figures, parse_at, pid_cpu_seconds, store_ops
from machine import machine_busy_seconds
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from servers import Server, free_port


@dataclass
class Phase:
    transport: Transport
    mode: str  # embedded | arq
    fault_rate: float
    prefix: str  # the target's code_prefix: its documents among the sandbox's seeded ones
    name: str = ""


def cli(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [str(BIN / "gateway"), *argv], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"gateway {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def new_key(env: dict[str, str], role: str) -> str:
    return cli(env, "keys", "create", "--role", role, "--label", "bench-drain").strip().splitlines()[-1]


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


def ingest(base: str, platform: str, platform_key: str, bodies_file: Path) -> dict[str, Any]:
    env = dict(os.environ, BENCH_AUTH=f"Bearer {platform_key}")
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--url", f"{base}/v1/orders/{platform}", "--bodies"]
    argv += [str(bodies_file), "--concurrency", str(INGEST_CONNECTIONS), "--warmup", "0", "--duration", "600"]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def target_view(client: httpx.Client, target: str) -> dict[str, Any]:
    items = client.get("/v1/targets/").raise_for_status().json()["items"]
    return next(i for i in items if i["target"] == target)


def run_phase(
    phase: Phase, bodies_file: Path, config_file: Path, tmp: Path, args: argparse.Namespace, pg: Any
) -> dict[str, Any]:
    """One drain of ``phase.transport`` in ``phase.mode``; ``config_file`` is the gateway
    configuration of that transport and mode (``drain_config.bench_config``)."""
    from tests.support.redis import start_redis

    tr, target = phase.transport, phase.transport.target
    run_dir = tmp / f"{tr.name}-{phase.name}"
    run_dir.mkdir()
    orders = args.orders
    with ExitStack() as stack:
        sandbox = stack.enter_context(sandbox_server(run_dir / "sandbox.log"))
        port = free_port()
        env = gateway_env(
            GATEWAY_CONFIG=str(config_file),
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
        it.post(f"/v1/targets/{target}/stop").raise_for_status()
        t = time.monotonic()
        load = ingest(base, tr.platform, platform_key, bodies_file)
        ingest_s = time.monotonic() - t
        if load["accepted_202"] != orders:
            got = load["accepted_202"]
            raise SystemExit(f"{tr.name} {phase.name}: {got} of {orders} orders accepted: {load['non_202']}")
        view = target_view(it, target)
        if view["backlog"] != orders or view["stop_line"]["state"] != "stopped":
            raise SystemExit(f"{tr.name} {phase.name}: expected a stopped line with {orders} waiting, got {view}")

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
        set_capacity(sandbox, tr.system, args)
        if phase.fault_rate:
            set_faults(sandbox, tr.system, phase.fault_rate)
        load_before = loadavg()
        cpu0 = {name: meter() for name, meter in meters.items()}
        ops0 = store_ops(env)
        busy0 = machine_busy_seconds()
        profiler = profile(workers[0] if workers else serve, run_dir, args) if args.profile else None
        t0_wall, t0 = time.time(), time.monotonic()
        it.post(f"/v1/targets/{target}/resume").raise_for_status()
        # Generous: a transport may need several calls per document (U8+ OpenAPI: 2, and a look-up
        # after a 500 reads the day's order list page by page).
        limit_s = max(300.0, 15 * orders / capacity(args))
        backlog = watch(phase, it, sandbox, orders, t0, limit_s)
        wall = time.monotonic() - t0
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            shutil.copy(run_dir / "profile.pyspy", args.profile / f"{tr.name}-{phase.name}.pyspy")
        cpu = {name: meter() - cpu0[name] for name, meter in meters.items()}
        ops = {k: v - ops0.get(k, 0) for k, v in store_ops(env).items()}
        busy = machine_busy_seconds() - busy0

        params = {"system": tr.system, "limit": 64}
        calls = httpx.get(f"{sandbox.url}/_sandbox/calls", params=params, timeout=60).json()["calls"]
        last_end = max(parse_at(c["at"]) + c["ms"] / 1000 for c in calls) if calls else time.time()
        cap = capacity_view(sandbox, tr.system)
        time.sleep(0.5)  # a duplicate, if any, would arrive now
        held, delivered = documents(sandbox, tr, phase.prefix)
        profile_calls = call_profile(sandbox, tr.system, held)
        figures = db_figures(env["GATEWAY_DATABASE_URL"])
    seconds = last_end - t0_wall
    return {
        "transport": tr.name,
        "target": target,
        "system": tr.system,
        "platform": tr.platform,
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
        "documents": held,
        "distinct_codes": delivered,
        "calls": cap["served"],
        "peak_open": cap["peak_open"],
        "peak_in_flight": cap["peak_in_flight"],
        "db": figures,
        "cpu_s": cpu,
        "store_ops": ops,
        "erp_in_flight_share": profile_calls["in_flight_share"] if args.timeline else None,
        "erp_calls": profile_calls,
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
        task = progress.add_task(f"  {phase.transport.name} {phase.name:16}", total=orders, rate=0.0, calls=0)
        while True:
            time.sleep(0.5)
            backlog = target_view(it, phase.transport.target)["backlog"]
            served = capacity_view(sandbox, phase.transport.system)["served"]
            elapsed = time.monotonic() - t0
            done = orders - backlog
            progress.update(task, completed=done, rate=done / elapsed, calls=served)
            if not live and elapsed >= next_line:
                label = f"{phase.transport.name} {phase.name}"
                console.print(f"  {label}: {done}/{orders} in {elapsed:.0f} s ({done / elapsed:.0f}/s)")
                next_line += 10.0
            if backlog == 0 or elapsed > limit_s:
                return backlog
