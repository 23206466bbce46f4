"""The K3 token broker (adapters/k3/tokens.py) on a real Redis against the K3 simulator: one live
session per account set for all workers together, refreshed on expiry or rejection without token
thrash (the simulator counts logins per account set, and a new login ends the previous token)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from adapters.k3.tokens import TokenBroker
from adapters.k3.webapi import K3WebApiAdapter
from adapters.redis.connection import redis_client
from gateway.errors import PermanentError, RetryableError
from tests.integration.test_k3_webapi import ACCOUNT_SET, CODE, control, documents, logins, make_doc

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
