"""The K3 token broker (adapters/k3/tokens.py) on a real Redis against the K3 simulator: one live
session per account set for all workers together, refreshed on expiry or rejection without token
thrash (the simulator counts logins per account set, and a new login ends the previous token)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from adapters.k3.tokens import TokenBroker
from adapters.k3.webapi import K3WebApiAdapter
from adapters.redis.connection import redis_client
from gateway.errors import PermanentError, RetryableError
from tests.e2e.conftest import BIN, GatewayProcess, free_port
from tests.integration.test_k3_webapi import (
    ACCOUNT_SET,
    CODE,
    control,
    documents,
    k3_gateway_config,
    logins,
    make_doc,
)

pytestmark = pytest.mark.integration

WORKERS = 4
DOCUMENTS = 40


def broker(sandbox, client: httpx.AsyncClient, redis=None, **kw: Any) -> TokenBroker:
    return TokenBroker(
        root=sandbox.url,
        authority_code=CODE,
        account_set=ACCOUNT_SET,
        client=client,
        timeout=httpx.Timeout(5.0, connect=2.0),
        redis=redis,
        **kw,
    )


class Worker:
    """What one ``gateway worker`` process holds: its own HTTP client, Redis connection, broker, adapter."""

    def __init__(self, sandbox, redis_url: str | None, stack: AsyncExitStack) -> None:
        self.client = httpx.AsyncClient()
        stack.push_async_callback(self.client.aclose)
        self.redis = redis_client(redis_url) if redis_url else None
        if self.redis is not None:
            stack.push_async_callback(self.redis.aclose)
        self.broker = broker(sandbox, self.client, self.redis)
        self.adapter = K3WebApiAdapter(root=sandbox.url, broker=self.broker, client=self.client, timeout=10.0)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def deliver_all(workers: list[Worker], codes: list[str]) -> None:
    """Each worker takes every WORKERS-th document; all run at once, several documents in flight each."""

    async def run(n: int, worker: Worker) -> None:
        await asyncio.gather(*(worker.adapter.submit(make_doc(code)) for code in codes[n::WORKERS]))

    await asyncio.gather(*(run(n, w) for n, w in enumerate(workers)))


async def test_four_workers_share_one_session_and_deliver_every_order_once(sandbox, redis_url, stack):
    workers = [Worker(sandbox, redis_url, stack) for _ in range(WORKERS)]
    codes = [f"GW{n:08d}" for n in range(1, DOCUMENTS + 1)]
    await deliver_all(workers, codes)
    stored = sorted(d["FBillNo"] for d in await documents(sandbox))
    assert stored == codes  # every order exactly once
    assert await logins(sandbox) == 1  # no thrash: one login for the whole fleet
    assert sum(w.broker.logins for w in workers) == 1
    assert not [c for c in sandbox.calls("k3") if c["outcome"] == "rejected"]


async def test_four_workers_after_a_genuine_expiry_log_in_once_more(sandbox, redis_url, stack):
    workers = [Worker(sandbox, redis_url, stack) for _ in range(WORKERS)]
    codes = [f"GW{n:08d}" for n in range(1, DOCUMENTS + 1)]
    await deliver_all(workers, codes[:20])
    await control(sandbox, "POST", "/_sandbox/k3/sessions", json={"expire": True})  # K3 ends the session
    await deliver_all(workers, codes[20:])  # every worker's next call is refused at first
    assert sorted(d["FBillNo"] for d in await documents(sandbox)) == codes
    assert await logins(sandbox) == 2  # one login per genuine expiry, not one per worker


async def test_without_a_shared_broker_the_simulator_shows_the_thrash(sandbox, stack):
    """The negative control: four workers each with a broker of its own (no Redis) throw each other
    out. Nothing is written twice (a refused call writes nothing), but logins pile up and some
    attempts fail for good within their one retry (to be retried later by the core)."""
    workers = [Worker(sandbox, None, stack) for _ in range(WORKERS)]
    codes = [f"GW{n:08d}" for n in range(1, 21)]
    results = await asyncio.gather(
        *(workers[n % WORKERS].adapter.submit(make_doc(code)) for n, code in enumerate(codes)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, RetryableError) for r in failed)
    assert len(await documents(sandbox)) == len(codes) - len(failed)
    assert await logins(sandbox) > WORKERS
    assert [c for c in sandbox.calls("k3") if c["outcome"] == "rejected"]


async def test_a_rejected_token_is_replaced_by_one_login_however_many_workers_saw_it(sandbox, redis_url, stack):
    brokers = [broker(sandbox, w.client, w.redis) for w in [Worker(sandbox, redis_url, stack) for _ in range(WORKERS)]]
    first = set(await asyncio.gather(*(b.token() for b in brokers)))
    assert len(first) == 1 and await logins(sandbox) == 1
    [stale] = first
    renewed = set(await asyncio.gather(*(b.rejected(stale) for b in brokers)))
    assert len(renewed) == 1 and renewed != first
    assert await logins(sandbox) == 2
    # A late worker reporting the old token again finds the new one: no login.
    assert await brokers[0].rejected(stale) == renewed.pop()
    assert await logins(sandbox) == 2


async def test_the_shared_token_expires_in_redis_before_its_validity_ends(sandbox, redis, stack):
    await control(sandbox, "POST", "/_sandbox/k3/sessions", json={"validity_s": 100})
    client = httpx.AsyncClient()
    stack.push_async_callback(client.aclose)
    b = broker(sandbox, client, redis, margin_s=10)
    token = await b.token()
    assert (await redis.get(b.key)).decode() == token
    assert 85_000 <= await redis.pttl(b.key) <= 90_000  # Validity 100 s less the 10 s margin
    assert await redis.exists(f"{b.key}:lock") == 0  # the login lock is released
    await redis.delete(b.key)
    stated = broker(sandbox, client, redis, margin_s=10, validity_s=40)  # a site stating Validity otherwise
    await stated.token()
    assert 29_000 <= await redis.pttl(stated.key) <= 30_000


async def test_a_worker_waits_for_the_login_another_worker_holds(sandbox, redis, stack):
    client = httpx.AsyncClient()
    stack.push_async_callback(client.aclose)
    holder, waiter = broker(sandbox, client, redis), broker(sandbox, client, redis)
    await redis.set(f"{holder.key}:lock", "someone-else", px=5000)  # another process is logging in
    pending = asyncio.create_task(waiter.token())
    await asyncio.sleep(0.3)
    assert not pending.done() and await logins(sandbox) == 0
    await redis.set(holder.key, "TOKEN-FROM-THE-OTHER-WORKER", px=60_000)  # its login lands
    assert await asyncio.wait_for(pending, 5) == "TOKEN-FROM-THE-OTHER-WORKER"
    assert waiter.logins == 0


async def test_in_process_broker_logs_in_once_for_concurrent_callers(sandbox, stack):
    client = httpx.AsyncClient()
    stack.push_async_callback(client.aclose)
    b = broker(sandbox, client)
    tokens = set(await asyncio.gather(*(b.token() for _ in range(20))))
    assert len(tokens) == 1 and b.logins == 1 and await logins(sandbox) == 1
    [stale] = tokens
    assert len(set(await asyncio.gather(*(b.rejected(stale) for _ in range(5))))) == 1
    assert b.logins == 2 and await logins(sandbox) == 2


async def test_a_wrong_authority_code_is_permanent_and_releases_the_lock(sandbox, redis, stack):
    client = httpx.AsyncClient()
    stack.push_async_callback(client.aclose)
    b = TokenBroker(
        root=sandbox.url,
        authority_code="WRONG",
        account_set="X",
        client=client,
        timeout=httpx.Timeout(5.0),
        redis=redis,
    )
    with pytest.raises(PermanentError) as info:
        await b.token()
    assert info.value.partner_message and "WRONG" not in info.value.message_en
    assert await redis.exists(b.key, f"{b.key}:lock") == 0


# --------------------------------------------------------------------------- real arq worker processes

DOUYIN_SAMPLE = Path(__file__).resolve().parents[2] / "mappings" / "samples" / "douyin" / "02_multi_line_coupons.json"
ORDERS = 40


def _douyin_bodies(count: int) -> list[bytes]:
    out = []
    for n in range(count):
        payload = msgspec.json.decode(DOUYIN_SAMPLE.read_bytes())
        payload["data"]["shop_order_detail"]["order_id"] = str(6_921_876_600_000_000_000 + n)
        out.append(msgspec.json.encode(payload))
    return out


def _delivered(metrics_port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    series = 'deliveries_total{outcome="delivered",target="k3-demo"} '
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(series))


@pytest.mark.e2e
def test_four_gateway_workers_deliver_douyin_orders_to_k3_with_one_login(sandbox, redis_url, tmp_path: Path):
    """``gateway serve`` relays to arq on Redis; four ``gateway worker`` processes deliver into the
    K3 simulator, each with its own adapter and broker, sharing the session through Redis."""
    config = k3_gateway_config(tmp_path, sandbox.url)
    config.write_text(config.read_text().replace("timeout_s = 10", "timeout_s = 10\nconcurrency = 8"))
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_LEASE_SECONDS": "30",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "K3_AUTHORITY_CODE": CODE,
    }
    gw = GatewayProcess(env, tmp_path / "serve.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        gw.cli("db", "upgrade")
        gw.start()
        ports = [free_port() for _ in range(WORKERS)]
        for n in range(WORKERS):
            log = (tmp_path / f"worker{n}.log").open("ab")
            cmd = [str(BIN / "gateway"), "worker", "--metrics-port", str(ports[n])]
            workers.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log))
        key = gw.cli("keys", "create", "--role", "platform").stdout.strip()
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            for body in _douyin_bodies(ORDERS):
                r = client.post("/v1/orders/douyin", content=body)
                assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while len(sandbox.documents("k3")) < ORDERS and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # a duplicate, if any, would arrive now
        bills = [d["FBillNo"] for d in sandbox.documents("k3")]
        assert len(bills) == ORDERS and len(set(bills)) == ORDERS  # every order exactly once
        sessions = httpx.get(f"{sandbox.url}/_sandbox/k3/sessions", timeout=5).json()
        assert sessions["logins"] == {ACCOUNT_SET: 1}  # four processes, one session
        assert not [c for c in sandbox.calls("k3") if c["outcome"] == "rejected"]
        delivered = [_delivered(port) for port in ports]
        assert sum(delivered) == ORDERS and sum(1 for d in delivered if d) > 1  # the workers shared the work
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        gw.stop()
