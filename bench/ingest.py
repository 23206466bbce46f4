"""Accepted, durable orders per second over HTTP on SQLite, side by side with a bare endpoint.

    .venv/bin/python bench/ingest.py [--requests 5000] [--concurrency 32] [--no-delivery]

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
Every process runs on 127.0.0.1 and is stopped by the run.
"""

from __future__ import annotations

import argparse
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
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from machine import machine_busy_seconds, tree_state
from pyspy_breakdown import report
from servers import PROFILE_RATE, Server, free_port, profile_start, profile_stop

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SAMPLE = REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json"
BIN = Path(sys.executable).parent
TARGET_RPS = 1000.0
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


def run_load(url: str, bodies_file: Path, args: argparse.Namespace, auth: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BENCH_AUTH", None)
    if auth:
        env["BENCH_AUTH"] = auth
    argv = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        url,
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
    done = subprocess.run(argv, env=env, capture_output=True, timeout=2 * args.duration + 120, check=False)
    after, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    if done.returncode != 0:
        raise SystemExit(f"load generator failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    result = json.loads(done.stdout)
    result["loadgen_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["machine_cpu_s"] = busy1 - busy0
    return result


# --------------------------------------------------------------------------- the runs


def run_baseline(bodies_file: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = Server(
        "baseline",
        [sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port)],
        dict(os.environ),
        tmp / "baseline.log",
    )
    try:
        server.wait_http(f"http://127.0.0.1:{port}/health/live")
        cpu0 = server.cpu_seconds()
        result = run_load(f"http://127.0.0.1:{port}/v1/orders/taobao", bodies_file, args, None)
        result["server_cpu_s"] = server.cpu_seconds() - cpu0
    finally:
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


def run_gateway(bodies_file: Path, preflight: bytes, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
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
        made = subprocess.run(
            [str(BIN / "gateway"), "keys", "create", "--role", "platform", "--label", "bench"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
        if made.returncode != 0:
            raise SystemExit(f"gateway keys create failed:\n{made.stderr.decode()[-2000:]}")
        auth = f"Bearer {made.stdout.decode().strip().splitlines()[-1]}"
        gateway = Server("gateway", [str(BIN / "gateway"), "serve"], env, tmp / "gateway.log")
        stack.callback(gateway.stop)
        base = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{base}/health/live")

        # One order before the load: it must be a plain 202 "accepted", or the figures mean nothing.
        r = httpx.post(
            f"{base}/v1/orders/taobao",
            content=preflight,
            headers={"Authorization": auth, "Content-Type": "application/json"},
            timeout=30,
        )
        if r.status_code != 202 or r.json().get("status") != "accepted":
            raise SystemExit(f"pre-flight order answered {r.status_code} {r.text[:500]}")

        profiler = profile_start(gateway.proc.pid, args.profile, args) if args.profile else None
        cpu0 = gateway.cpu_seconds()
        sandbox_cpu0 = sandbox.cpu_seconds() if sandbox else 0.0
        result = run_load(f"{base}/v1/orders/taobao", bodies_file, args, auth)
        result["server_cpu_s"] = gateway.cpu_seconds() - cpu0
        result["sandbox_cpu_s"] = (sandbox.cpu_seconds() - sandbox_cpu0) if sandbox else 0.0
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
    accepted = 1 + result["warmup"]["accepted_202"] + result["accepted_202"]
    result["expected_orders"] = accepted
    result["durable_ok"] = result["db_after_stop"]["orders"] == accepted
    result["mode"] = "no-delivery" if args.no_delivery else "delivery"
    return result


# --------------------------------------------------------------------------- report


def others_share(r: dict[str, Any]) -> float:
    """Share of the machine's CPUs used by processes outside the benchmark during its load."""
    ours = r["server_cpu_s"] + r["loadgen_cpu_s"] + r.get("sandbox_cpu_s", 0.0)
    wall = r["elapsed_s"] + r["warmup"]["elapsed_s"]
    return max(0.0, r["machine_cpu_s"] - ours) / (wall * (os.cpu_count() or 1))


def line(name: str, r: dict[str, Any]) -> str:
    cpu_ms = r["server_cpu_s"] / max(1, r["sent"] + r["warmup"]["sent"]) * 1000
    bad = sum(r["non_202"].values()) + sum(r["errors"].values())
    return (
        f"{name:12} {r['sent']:6d} {r['elapsed_s']:7.1f}s {r['rps']:8.0f} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f}"
        f" {r['p99_ms']:8.1f} {r['max_ms']:8.1f} {bad:6d} {cpu_ms:10.2f} {others_share(r) * 100:8.0f}%"
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
    ap.add_argument("--no-delivery", action="store_true", help="ERP URL on a closed port: deliveries fail fast")
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

    baselines: list[dict[str, Any]] = []
    gateways: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    try:
        bodies = build_bodies(args.warmup + args.requests + 1, first=1)
        preflight, bodies = bodies[0], bodies[1:]
        bodies_file = tmp / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
        mode = "no-delivery (ERP on a closed port)" if args.no_delivery else "delivery (sandbox U8 EAI)"
        print(f"tree: {tree_state()}")
        print(
            f"ingest: {args.repeat} x ({args.requests} timed + {args.warmup} warm-up requests),"
            f" {args.concurrency} connections, {len(bodies[0])}-byte Taobao orders, {args.client} client,"
            f" mode {mode}; {os.cpu_count()} CPUs"
        )
        profile = args.profile
        for i in range(args.repeat):
            if not args.skip_baseline:
                baselines.append(run_baseline(bodies_file, tmp, args))
            run_dir = tmp / f"run{i + 1}"
            run_dir.mkdir()
            args.profile = profile if i == 0 else None  # one profile is enough, and it slows its run
            gateways.append(run_gateway(bodies_file, preflight, run_dir, args))
        args.profile = profile
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{'server':12} {'sent':>6} {'time':>8} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8} {'non202':>6} {'cpu ms/req':>10} {'others':>9}"
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
    print("others: the machine's CPUs used meanwhile by processes outside this benchmark")
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
        print(
            f"gateway #{i}: database holds {after['orders']} orders for {g['expected_orders']} answers of 202"
            f" (warm-up and pre-flight included): {'OK' if g['durable_ok'] else 'MISMATCH'};"
            f" at the end of the load {during['orders_by_state']}, outbox {during['outbox_by_state']}"
        )
        if "drain" in g:
            d = g["drain"]
            print(
                f"gateway #{i}: after the load, {d['delivered']} documents delivered in {d['seconds']:.1f} s"
                f" ({d['per_s']:.0f}/s), {d['left']} left; the sandbox U8 holds {d['documents']} gateway"
                f" documents under {d['distinct_codes']} codes"
            )
    cpu = [("loadgen", gateway["loadgen_cpu_s"]), ("sandbox", gateway["sandbox_cpu_s"])]
    print(
        f"CPU in the median gateway run ({os.cpu_count()} CPUs): gateway {gateway['server_cpu_s']:.1f} s, "
        + ", ".join(f"{name} {secs:.1f} s" for name, secs in cpu)
        + f"; wall {gateway['elapsed_s'] + gateway['warmup']['elapsed_s']:.1f} s (warm-up + timed)"
    )
    ok_rps = gateway["rps"] >= TARGET_RPS
    ok_p99 = gateway["p99_ms"] < TARGET_P99_MS
    print(
        f"targets (median run): ≥ {TARGET_RPS:.0f} orders/s {'met' if ok_rps else 'NOT met'};"
        f" p99 < {TARGET_P99_MS:.0f} ms {'met' if ok_p99 else 'NOT met'}"
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
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "baseline_runs": baselines,
                    "gateway_runs": gateways,
                },
                indent=2,
            )
        )
    return 0 if all(g["durable_ok"] for g in gateways) and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
