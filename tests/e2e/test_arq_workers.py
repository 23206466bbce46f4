"""One delivery path, two queues: ``gateway serve`` relays outbox rows to arq on a real Redis, two
``gateway worker`` processes deliver them into the sandbox U8, and the shared Redis limit keeps the
ERP at its configured concurrency across both workers."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.e2e.conftest import BIN, GatewayProcess, free_port
from tests.support.gateway import SAMPLES
from tests.support.redis import start_redis

pytestmark = pytest.mark.e2e

SAMPLE = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()
ORDERS = 200


def _bodies(count: int) -> list[bytes]:
    out = []
    for n in range(count):
        payload = msgspec.json.decode(SAMPLE)
        trade = payload["trade_fullinfo_get_response"]["trade"]
        trade["tid"] = 6_000_000_000_000_000_000 + n
        trade["tid_str"] = str(trade["tid"])
        out.append(msgspec.json.encode(payload))
    return out


def _sample(metrics: str, series: str) -> float:
    """The value of one series in Prometheus text format (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(predicate, timeout: float, what: str):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def redis_server():
    with start_redis() as server:
        yield server


def test_serve_and_two_arq_workers_deliver_every_order_once_within_the_erp_limit(
    tmp_path: Path, sandbox, redis_server
) -> None:
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_SANDBOX_URL": sandbox.url,
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_LEASE_SECONDS": "10",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    sandbox.capacity("u8", concurrency=2, service_ms=10)
    gw = GatewayProcess(env, tmp_path / "serve.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        gw.cli("db", "upgrade")
        assert gw.cli("worker", "--check", check=False).returncode == 1  # no worker yet
        gw.start()
        ready = httpx.get(f"{gw.url}/health/ready", timeout=5).json()
        assert ready["checks"]["queue"] == {"ok": True, "kind": "arq", "relay": True}
        metrics_ports = [free_port(), free_port()]
        for n in range(2):
            log = (tmp_path / f"worker{n}.log").open("ab")
            cmd = [str(BIN / "gateway"), "worker", "--metrics-port", str(metrics_ports[n])]
            workers.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log))
        _wait(lambda: gw.cli("worker", "--check", check=False).returncode == 0, 30, "a worker's health record")
        key = gw.cli("keys", "create", "--role", "platform").stdout.strip()
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:

            def submit(body: bytes) -> str:
                r = client.post("/v1/orders/taobao", content=body)
                assert r.status_code == 202, r.text
                return r.json()["id"]

            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(submit, _bodies(ORDERS)))
        _wait(lambda: len(sandbox.documents("u8")) >= ORDERS, 120, f"{ORDERS} U8 documents")
        time.sleep(0.5)  # a duplicate, if any, would arrive now
        docs = sandbox.documents("u8")
        codes = [d["code"] for d in docs]
        assert len(codes) == ORDERS and len(set(codes)) == ORDERS  # exactly one document per order
        assert sandbox.capacity("u8")["peak_open"] <= 2  # the shared limit held across both workers
        # Each worker serves its own metrics; together they count every delivery once.
        delivered = lag = 0.0
        for port in metrics_ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            delivered += _sample(text, 'deliveries_total{outcome="delivered",target="u8-demo"}')
            lag += _sample(text, 'delivery_lag_seconds_count{target="u8-demo"}')
        assert delivered == ORDERS and lag == ORDERS
        ready = httpx.get(f"{gw.url}/health/ready", timeout=5).json()
        assert ready["checks"]["erp_targets"]["u8-demo"] == {"ok": True, "circuit": "closed"}  # shared, from Redis
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            wms = gw.cli("keys", "create", "--role", "wms").stdout.strip()
            for gid in ids[:: ORDERS // 10]:
                order = client.get(f"/v1/orders/{gid}", headers={"Authorization": f"Bearer {wms}"}).json()
                assert order["state"] == "delivered" and order["erp"]["document_no"]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        gw.stop()


def test_gateway_worker_without_redis_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_REDIS_URL"}
    env["GATEWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    done = subprocess.run([str(BIN / "gateway"), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "GATEWAY_REDIS_URL" in done.stderr
