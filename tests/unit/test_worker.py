"""The embedded worker on fakes: wake-ups from a burst of accepted orders are coalesced into a few
claims, claims come in batches as slots free up, and still every order becomes one document."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import msgspec
import pytest

from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.delivery import DeliveryDeps
from gateway.intake import accept_order
from gateway.ports import ErpDocument, ErpReceipt
from gateway.runtime import load_runtime
from gateway.worker import EmbeddedWorker
from tests.unit.fakes import FakeUnitOfWorkFactory

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json"


class SlowErp:
    """Takes a little time per document and counts how many are in flight at once."""

    def __init__(self, delay_s: float = 0.002) -> None:
        self.delay_s = delay_s
        self.documents: dict[str, ErpDocument] = {}
        self.in_flight = 0
        self.peak = 0

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        assert doc.code not in self.documents, "a document was sent twice"
        self.documents[doc.code] = doc
        return ErpReceipt(document_no=doc.code)

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        return ErpReceipt(document_no=doc.code) if doc.code in self.documents else None

    async def aclose(self) -> None:
        pass


def bodies(count: int) -> list[bytes]:
    """``count`` copies of the sample, each its own platform order (a tid of its own)."""
    out = []
    for n in range(count):
        payload = msgspec.json.decode(SAMPLE.read_bytes())
        trade = payload["trade_fullinfo_get_response"]["trade"]
        trade["tid"] = 5_000_000_000_000_000_000 + n
        trade["tid_str"] = str(trade["tid"])
        out.append(msgspec.json.encode(payload))
    return out


@pytest.fixture
def runtime():
    return load_runtime(load_config(None, env={}))


async def _until(predicate) -> None:  # noqa: ANN001
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - the fakes have no event to wait on
            await asyncio.sleep(0.005)


async def test_a_burst_of_wakeups_costs_a_few_claims_and_delivers_every_order(runtime) -> None:
    uow, erp, clock = FakeUnitOfWorkFactory(), SlowErp(), SystemClock()
    deps = DeliveryDeps(uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1))
    worker = EmbeddedWorker(deps, concurrency=8, lease_seconds=60)
    worker.start()
    try:
        orders = bodies(30)
        for body in orders:  # as the HTTP handler does: one wake-up per accepted order
            result = await accept_order(
                "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
            )
            assert result.status_code == 202
            worker.wake()
        await _until(lambda: len(erp.documents) == len(orders))
        async with uow(write=False) as u:
            assert await u.outbox.pending_count() == 0
            states = {(await u.orders.get(o)).state for o in uow.state.orders}
    finally:
        await worker.stop()
    assert states == {"delivered"}
    # One claim per batch of freed slots (4 of 8) or per coalesced burst, never one per order.
    assert worker.claims <= len(orders) // worker.claim_batch + 5
    assert erp.peak <= runtime.config.targets["u8-demo"].concurrency


async def test_an_idle_worker_claims_once_for_orders_that_arrive_together(runtime) -> None:
    uow, erp, clock = FakeUnitOfWorkFactory(), SlowErp(delay_s=0), SystemClock()
    deps = DeliveryDeps(uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1))
    worker = EmbeddedWorker(deps, concurrency=8, lease_seconds=60, coalesce_s=0.05)
    worker.start()
    try:
        await asyncio.sleep(0.02)  # idle: asleep until woken
        idle_claims = worker.claims
        for body in bodies(5):
            await accept_order(
                "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
            )
            worker.wake()
        await _until(lambda: len(erp.documents) == 5)
    finally:
        await worker.stop()
    assert worker.claims - idle_claims <= 2  # the burst's claim (and at most one that finds nothing)


async def test_stop_does_not_wait_for_a_batch_of_free_slots(runtime) -> None:
    uow, erp, clock = FakeUnitOfWorkFactory(), SlowErp(delay_s=0.3), SystemClock()
    deps = DeliveryDeps(uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1))
    worker = EmbeddedWorker(deps, concurrency=2, lease_seconds=60, claim_batch=2)
    for body in bodies(3):
        await accept_order(
            "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
        )
    worker.start()
    await _until(lambda: erp.in_flight > 0)
    started = time.monotonic()
    await worker.stop(grace_s=5)
    assert time.monotonic() - started < 1.0  # the in-flight calls finish; nothing new is claimed
    assert len(erp.documents) == 2 and not worker.running


async def test_with_a_limiter_the_next_documents_wait_for_a_permit_instead_of_being_deferred(runtime) -> None:
    from gateway.limits import InProcessConcurrencyLimiter, LimitsConfig

    uow, erp, clock = FakeUnitOfWorkFactory(), SlowErp(delay_s=0.02), SystemClock()
    limiter = InProcessConcurrencyLimiter({"u8-demo": LimitsConfig(concurrency=2)})
    deps = DeliveryDeps(
        uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1), limiter=limiter
    )
    worker = EmbeddedWorker(deps, concurrency=16, lease_seconds=60)
    orders = bodies(24)
    for body in orders:
        await accept_order(
            "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
        )
    in_progress = 0

    def leased() -> bool:
        nonlocal in_progress
        in_progress = max(in_progress, sum(row.state == "leased" for row in uow.state.outbox.values()))
        return len(erp.documents) == len(orders)

    worker.start()
    try:
        await _until(leased)
    finally:
        await worker.stop()
    assert erp.peak == 2  # the limiter holds the ERP at its limit…
    assert in_progress > 2  # …while the next documents are already claimed, read and waiting
    # Every row was claimed once and delivered on that claim: none was put back for want of a permit.
    assert {(row.state, row.token) for row in uow.state.outbox.values()} == {("done", 1)}


async def test_while_every_line_is_stopped_the_worker_claims_nothing_until_a_resume(runtime) -> None:
    from gateway.lines import StopLines

    uow, erp, clock = FakeUnitOfWorkFactory(), SlowErp(delay_s=0), SystemClock()
    lines = StopLines(runtime.config.targets, uow, clock)
    lines.stopped = set(runtime.config.targets)  # every target of the demo configuration
    deps = DeliveryDeps(
        uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1), lines=lines
    )
    worker = EmbeddedWorker(deps, concurrency=8, lease_seconds=60, idle_poll_s=0.05)
    worker.start()
    try:
        for body in bodies(5):
            await accept_order(
                "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
            )
            worker.wake()
        await asyncio.sleep(0.2)  # several idle polls and wake-ups
        assert worker.claims == 0 and not erp.documents
        lines.stopped = set()
        worker.wake()  # what the resume does (StopLines calls on_resume)
        await _until(lambda: len(erp.documents) == 5)
    finally:
        await worker.stop()
