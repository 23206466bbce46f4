"""``PermitQueue``: callers wait for a permit first come first served, a released permit goes to
the head of the queue at once, the head alone polls the inner limiter for permits freed
elsewhere, and a caller gives up after ``wait_s``."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.limits import InProcessConcurrencyLimiter, LimitsConfig, PermitQueue

T = "u8-demo"


def queue(concurrency: int = 1, *, wait_s: float = 2.0, poll_s: float = 0.02) -> PermitQueue:
    inner = InProcessConcurrencyLimiter({T: LimitsConfig(concurrency=concurrency)})
    return PermitQueue(inner, wait_s=wait_s, poll_s=poll_s)


async def _waiting(q: PermitQueue, n: int) -> None:
    async with asyncio.timeout(2):
        while q.waiting(T) < n:  # noqa: ASYNC110 - the queue has no event for this
            await asyncio.sleep(0.001)


async def test_a_free_permit_is_taken_at_once_and_none_after_the_wait() -> None:
    q = queue(1, wait_s=0.05)
    first = await q.acquire(T)
    assert first is not None
    started = time.monotonic()
    assert await q.acquire(T) is None  # nothing freed within wait_s
    assert 0.04 <= time.monotonic() - started < 1.0
    assert q.waiting(T) == 0


async def test_released_permits_go_to_the_waiters_in_arrival_order() -> None:
    q = queue(1)
    held = await q.acquire(T)
    assert held is not None
    order: list[str] = []

    async def caller(name: str) -> None:
        permit = await q.acquire(T)
        assert permit is not None
        order.append(name)
        await asyncio.sleep(0.005)
        await q.release(permit)

    tasks = []
    for name in ("b", "c", "d"):
        tasks.append(asyncio.create_task(caller(name)))
        await _waiting(q, len(tasks))
    await q.release(held)
    await asyncio.gather(*tasks)
    assert order == ["b", "c", "d"]


async def test_a_newcomer_does_not_take_a_permit_handed_to_a_waiter() -> None:
    q = queue(1)
    held = await q.acquire(T)
    assert held is not None
    waiter = asyncio.create_task(q.acquire(T))
    await _waiting(q, 1)
    await q.release(held)
    newcomer = asyncio.create_task(q.acquire(T))  # arrives before the waiter has run
    got = await waiter
    assert got is not None
    await _waiting(q, 1)  # the newcomer queues behind
    assert not newcomer.done()
    await q.release(got)
    assert await newcomer is not None


async def test_the_head_picks_up_a_permit_freed_outside_the_queue() -> None:
    q = queue(1, poll_s=0.01)
    held = await q.acquire(T)
    assert held is not None
    waiter = asyncio.create_task(q.acquire(T))
    await _waiting(q, 1)
    await q.inner.release(held)  # another process, or an expired lease: no hand-off
    async with asyncio.timeout(1):
        assert await waiter is not None


async def test_a_cancelled_head_passes_its_turn_on() -> None:
    q = queue(1)
    held = await q.acquire(T)
    assert held is not None
    head = asyncio.create_task(q.acquire(T))
    await _waiting(q, 1)
    second = asyncio.create_task(q.acquire(T))
    await _waiting(q, 2)
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    assert q.waiting(T) == 1
    await q.release(held)
    async with asyncio.timeout(1):
        assert await second is not None


async def test_waits_are_per_target() -> None:
    inner = InProcessConcurrencyLimiter({T: LimitsConfig(concurrency=1), "k3": LimitsConfig(concurrency=1)})
    q = PermitQueue(inner, wait_s=2.0)
    assert await q.acquire(T) is not None
    waiter = asyncio.create_task(q.acquire(T))
    await _waiting(q, 1)
    assert await q.acquire("k3") is not None  # not behind the other target's queue
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
