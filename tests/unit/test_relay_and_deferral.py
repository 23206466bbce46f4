"""The outbox relay and the ERP's protections in ``deliver``, on fakes: one job per row per attempt,
re-offered after a lost queue; a refused permit or an open circuit defers the row without an ERP
call and without counting an attempt; business rejections do not open the circuit."""

from __future__ import annotations

from gateway.circuit import CircuitConfig, Circuits
from gateway.delivery import deliver
from gateway.errors import PermanentError, RetryableError
from gateway.limits import InProcessConcurrencyLimiter, LimitsConfig
from gateway.relay import OutboxRelay
from tests.unit.fakes import FakeUnitOfWorkFactory
from tests.unit.test_delivery_core import ORDER, FakeClock, FakeErp, _claim, _setup, runtime  # noqa: F401


class FakeQueue:
    """Like arq with ``_job_id``: a second job of a name it holds is refused."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.offers = 0

    async def enqueue_delivery(self, outbox_id: int, *, job_id: str) -> bool:
        self.offers += 1
        if job_id in self.jobs:
            return False
        self.jobs[job_id] = outbox_id
        return True


async def _outbox_row(uow, clock, n: int) -> int:  # noqa: ANN001
    async with uow() as u:
        row = await u.outbox.add(order_id=f"order-{n}", target="u8-demo", kind="saleorder", available_at=clock.now())
        await u.commit()
    return row


async def test_relay_queues_one_job_per_row_per_attempt_and_heals_a_lost_queue() -> None:
    uow, clock, queue, mono = FakeUnitOfWorkFactory(), FakeClock(), FakeQueue(), [0.0]
    relay = OutboxRelay(uow, queue, clock, reoffer_s=10, monotonic=lambda: mono[0])
    rows = [await _outbox_row(uow, clock, n) for n in range(3)]
    assert await relay.relay_once() == 3
    assert sorted(queue.jobs.values()) == rows
    assert await relay.relay_once() == 0 and queue.offers == 3  # offered recently: not even asked again

    async with uow() as u:  # one row is claimed and deferred: a new attempt, a new job name
        lease = await u.outbox.claim_one(rows[0], owner="w", now=clock.now(), lease_seconds=30)
        await u.outbox.defer(lease, now=clock.now(), available_at=clock.now())
        await u.commit()
    assert await relay.relay_once() == 1
    assert f"outbox:{rows[0]}:1" in queue.jobs

    queue.jobs.clear()  # Redis restarted and lost its queue
    mono[0] += 11
    assert await relay.relay_once() == 3  # the outbox drives again


async def test_relay_offers_expired_leases_but_not_live_ones() -> None:
    uow, clock, queue = FakeUnitOfWorkFactory(), FakeClock(), FakeQueue()
    relay = OutboxRelay(uow, queue, clock)
    row = await _outbox_row(uow, clock, 1)
    async with uow() as u:
        await u.outbox.claim_one(row, owner="dies", now=clock.now(), lease_seconds=30)
        await u.commit()
    assert await relay.relay_once() == 0  # a live lease: its worker is on it
    clock.advance(31)
    assert await relay.relay_once() == 1 and list(queue.jobs) == [f"outbox:{row}:1"]


async def test_no_free_permit_defers_without_a_call_or_an_attempt(runtime) -> None:  # noqa: F811
    erp = FakeErp("ok")
    uow, clock, deps, gid = await _setup(runtime, erp)
    limiter = InProcessConcurrencyLimiter({"u8-demo": LimitsConfig(concurrency=1)})
    held = await limiter.acquire("u8-demo")  # another delivery holds the only permit
    deps.limiter = limiter
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "deferred"
    assert erp.calls == []
    assert await _claim(uow, clock) == []  # deferred a little into the future
    await limiter.release(held)
    clock.advance(1)
    (again,) = await _claim(uow, clock)
    assert again.attempts == 0 and again.state_data == {"deferrals": 1}
    assert await deliver(again, deps) == "delivered"
    assert erp.calls == ["submit"]  # a deferral is no unknown outcome: no look-up first
    assert limiter.in_use("u8-demo") == 0


async def test_an_open_circuit_defers_and_business_rejections_keep_it_closed(runtime) -> None:  # noqa: F811
    rejection = PermanentError("unknown customer", partner_message="客户编码不存在")
    erp = FakeErp(rejection, RetryableError("down"), RetryableError("down"))
    uow, clock, deps, gid = await _setup(runtime, erp)
    mono = [0.0]
    deps.circuits = Circuits({"u8-demo": CircuitConfig(failure_threshold=1, open_seconds=5)}, clock=lambda: mono[0])
    breaker = deps.circuits.get("u8-demo")
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "dead"
    assert breaker.state == "closed"  # the ERP answered: it is up

    async with uow() as u:  # replay it, then the ERP goes down
        await u.outbox.requeue(lease.id, now=clock.now())
        await u.commit()
    (second,) = await _claim(uow, clock)
    assert await deliver(second, deps) == "retry"
    assert breaker.state == "open"
    calls = len(erp.calls)
    clock.advance(3600)
    (third,) = await _claim(uow, clock)
    assert await deliver(third, deps) == "deferred"
    assert len(erp.calls) == calls  # no call while open
    clock.advance(6)
    mono[0] += 6  # half-open: one probe
    (probe,) = await _claim(uow, clock)
    assert probe.attempts == 1  # the deferral counted no attempt
    assert await deliver(probe, deps) == "retry" and breaker.state == "open"


async def test_a_burst_of_wakes_costs_a_few_relay_passes() -> None:
    import asyncio

    uow, clock, queue = FakeUnitOfWorkFactory(), FakeClock(), FakeQueue()
    relay = OutboxRelay(uow, queue, clock, idle_poll_s=10, min_interval_s=0.1)
    passes = 0
    relay_once = relay.relay_once

    async def counted() -> int:
        nonlocal passes
        passes += 1
        return await relay_once()

    relay.relay_once = counted  # type: ignore[method-assign]
    relay.start()
    try:
        for _ in range(50):  # every deferred or rescheduled delivery wakes the relay
            relay.wake()
            await asyncio.sleep(0.004)
        row = await _outbox_row(uow, clock, 1)
        relay.wake()
        async with asyncio.timeout(2):
            while not queue.jobs:  # noqa: ASYNC110 - the fake queue has no event
                await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert list(queue.jobs.values()) == [row]  # a wake is never lost
    assert passes <= 6  # ~0.25 s of wakes at one pass per 0.1 s, not 50 passes
