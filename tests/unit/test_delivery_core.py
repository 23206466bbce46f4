"""The intake and delivery core on hand-written fakes: what gets written, and what the ERP is asked."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from gateway.config import RetryPolicy, load_config
from gateway.delivery import DeliveryDeps, deliver
from gateway.errors import PermanentError, RetryableError, UnknownOutcomeError
from gateway.intake import accept_order
from gateway.ports import ErpDocument, ErpReceipt
from gateway.retry import backoff_delay, exhausted
from gateway.runtime import load_runtime
from tests.unit.fakes import FakeUnitOfWorkFactory

REPO = Path(__file__).resolve().parents[2]
ORDER = (REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json").read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeErp:
    """An ERP that answers from a script and remembers what it holds, like U8 keyed by code."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.documents: dict[str, ErpDocument] = {}
        self.calls: list[str] = []
        self.edits: list[ErpDocument] = []  # every document sent to update

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        self.calls.append("submit")
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "written-then-lost":
            self.documents[doc.code] = doc
            raise UnknownOutcomeError("reply lost")
        if isinstance(outcome, Exception):
            raise outcome
        self.documents[doc.code] = doc
        return ErpReceipt(document_no=doc.code, erp_key="k1")

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        self.calls.append("lookup")
        return ErpReceipt(document_no=doc.code) if doc.code in self.documents else None

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """Like U8's ``proc="edit"``: the document must be there; an unknown outcome may have edited it."""
        self.calls.append("update")
        self.edits.append(doc)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "written-then-lost":
            self.documents[doc.code] = doc
            raise UnknownOutcomeError("reply lost")
        if isinstance(outcome, Exception):
            raise outcome
        if doc.code not in self.documents:
            raise PermanentError("no such document", partner_message=f"单据 {doc.code} 不存在")
        self.documents[doc.code] = doc
        return ErpReceipt(document_no=doc.code)

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """Like U8's ``proc="delete"``: a document already gone counts as cancelled."""
        self.calls.append("cancel")
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        self.documents.pop(doc.code, None)
        return ErpReceipt(document_no=doc.code)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def runtime():
    return load_runtime(load_config(None, env={}))


async def _setup(runtime, erp: FakeErp):
    uow = FakeUnitOfWorkFactory()
    clock = FakeClock()
    result = await accept_order(
        "taobao", ORDER, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
    )
    assert result.status_code == 202
    deps = DeliveryDeps(uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, rng=random.Random(1))
    return uow, clock, deps, result.order_id


async def _claim(uow, clock):
    async with uow() as u:
        leases = await u.outbox.claim(owner="t", now=clock.now(), lease_seconds=30, limit=10)
        await u.commit()
    return leases


async def _order(uow, gid):
    async with uow(write=False) as u:
        return await u.orders.get(gid)


async def test_intake_writes_order_outbox_and_audit_together(runtime) -> None:
    uow, _, _, gid = await _setup(runtime, FakeErp())
    async with uow(write=False) as u:
        order = await u.orders.get(gid)
        assert order.state == "accepted" and order.erp_target == "u8-demo" and order.seq == 1
        assert await u.outbox.pending_count() == 1
        entries = await u.audit.list(after_seq=0, limit=10)
        assert [e.action for e in entries] == ["order.accepted"]
        assert "receiver" not in msgspec.json.encode(entries[0].data).decode()


async def test_success_records_the_document(runtime) -> None:
    erp = FakeErp("ok")
    uow, clock, deps, gid = await _setup(runtime, erp)
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "delivered"
    order = await _order(uow, gid)
    assert order.state == "delivered" and order.erp_document_no == "GW00000001" and erp.calls == ["submit"]
    doc = erp.documents["GW00000001"]
    assert doc.header["custcode"] == "010001" and doc.header["define10"] == "3961187420015523311"
    assert [e["inventorycode"] for e in doc.entries] == ["040101", "040102", "040103"]
    assert [e["irowno"] for e in doc.entries] == [1, 2, 3]


async def test_unknown_outcome_is_looked_up_before_the_retry(runtime) -> None:
    erp = FakeErp("written-then-lost")
    uow, clock, deps, gid = await _setup(runtime, erp)
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "unknown_outcome"
    assert await _claim(uow, clock) == []  # not due before the look-up delay
    clock.advance(runtime.config.targets["u8-demo"].retry.unknown_outcome_delay_s)
    (again,) = await _claim(uow, clock)
    assert again.state_data == {"outcome_unknown": True}
    assert await deliver(again, deps) == "delivered"
    assert erp.calls == ["submit", "lookup"]  # found it: no second submit
    assert len(erp.documents) == 1 and (await _order(uow, gid)).state == "delivered"


async def test_a_worker_that_died_mid_call_leads_to_a_lookup(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, _ = await _setup(runtime, erp)
    (lost,) = await _claim(uow, clock)  # claimed, then the worker vanished
    clock.advance(31)
    (lease,) = await _claim(uow, clock)
    assert lease.token == lost.token + 1
    assert await deliver(lease, deps) == "delivered"
    assert erp.calls == ["lookup", "submit"]


async def test_a_stale_lease_records_nothing(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _setup(runtime, erp)
    (stale,) = await _claim(uow, clock)
    clock.advance(31)
    (fresh,) = await _claim(uow, clock)
    assert await deliver(fresh, deps) == "delivered"
    assert await deliver(stale, deps) == "lease_lost"  # its token moved on: it may not write
    async with uow(write=False) as u:
        assert [e.action for e in await u.audit.list(after_seq=0, limit=50)].count("delivery.succeeded") == 1


async def test_permanent_rejection_goes_to_dead_letters_with_the_erp_words(runtime) -> None:
    erp = FakeErp(PermanentError("rejected", partner_message="存货编码[040101]不存在", hint="add it"))
    uow, clock, deps, gid = await _setup(runtime, erp)
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "dead"
    async with uow(write=False) as u:
        (letter,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
        order = await u.orders.get(gid)
    assert letter.partner_message == "存货编码[040101]不存在" and letter.hint == "add it"
    assert order.state == "dead" and order.erp_status == "failed"


async def test_retryable_errors_back_off_then_dead_letter(runtime) -> None:
    policy = runtime.config.targets["u8-demo"].retry
    erp = FakeErp(*[RetryableError("down")] * policy.max_attempts)
    uow, clock, deps, gid = await _setup(runtime, erp)
    outcomes = []
    for _ in range(policy.max_attempts):
        clock.advance(policy.cap_s + 1)
        (lease,) = await _claim(uow, clock)
        outcomes.append(await deliver(lease, deps))
    assert outcomes == ["retry"] * (policy.max_attempts - 1) + ["dead"]
    assert erp.calls == ["submit"] * policy.max_attempts  # nothing was written: no look-ups


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(first_delay_s=2, factor=2, cap_s=60, max_attempts=5, jitter=0.5)
    rng = random.Random(7)
    for attempt, base in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        delays = [backoff_delay(policy, attempt, rng) for _ in range(200)]
        assert min(delays) >= base * 0.5 and max(delays) <= base
        assert max(delays) - min(delays) > base * 0.3  # really random, not lock-step
    assert not exhausted(policy, 4) and exhausted(policy, 5)
    with pytest.raises(ValueError):
        backoff_delay(policy, 0)


async def test_a_delivery_whose_worker_dies_every_time_ends_as_a_dead_letter(runtime) -> None:
    """A poison order that kills its worker mid-call is not retried for ever: interrupted claims
    count as attempts; the last one looks the document up, and without one the row is buried."""
    erp = FakeErp()
    uow, clock, deps, gid = await _setup(runtime, erp)
    policy = runtime.config.targets["u8-demo"].retry
    for _ in range(policy.max_attempts):
        (lost,) = await _claim(uow, clock)  # claimed, then the worker died during the call
        clock.advance(31)
    (last,) = await _claim(uow, clock)
    assert last.token == policy.max_attempts + 1 and last.attempts == 0
    assert await deliver(last, deps) == "dead"
    assert erp.calls == ["lookup"]  # looked up (nothing there), never sent again
    async with uow(write=False) as u:
        (letter,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
    assert letter.reason_code == "DELIVERY_INTERRUPTED" and letter.attempts == policy.max_attempts
    assert "GATEWAY_LEASE_SECONDS" in letter.hint
    assert (await _order(uow, gid)).state == "dead"


async def test_a_replay_starts_the_count_of_interrupted_claims_afresh(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _setup(runtime, erp)
    policy = runtime.config.targets["u8-demo"].retry
    for _ in range(policy.max_attempts):
        await _claim(uow, clock)
        clock.advance(31)
    (last,) = await _claim(uow, clock)
    assert await deliver(last, deps) == "dead"
    async with uow() as u:
        (letter,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
        assert await u.outbox.requeue(letter.outbox_id, now=clock.now())
        await u.commit()
    (replayed,) = await _claim(uow, clock)
    assert await deliver(replayed, deps) == "delivered"
    assert erp.calls == ["lookup", "submit"]  # the last claim looked it up (nothing): the replay sends once


class SlowErp(FakeErp):
    """Answers only after ``delay`` real seconds (and stores the document when it does)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        self.calls.append("submit")
        await asyncio.sleep(self.delay)
        self.documents[doc.code] = doc
        return ErpReceipt(document_no=doc.code)


async def test_an_erp_call_longer_than_the_lease_ends_as_an_unknown_outcome_within_it(runtime) -> None:
    """An ERP slower than the lease must not be cut off by the lease's end with nothing recorded
    (it would be taken over for ever without counting an attempt): the call is given the time
    left on the lease, less a margin, and then counts as an attempt whose outcome is unknown."""
    erp = SlowErp(delay=30)
    uow, clock, deps, gid = await _setup(runtime, erp)
    async with uow() as u:
        (lease,) = await u.outbox.claim(owner="t", now=clock.now(), lease_seconds=0.8, limit=1)
        await u.commit()
    assert await asyncio.wait_for(deliver(lease, deps), timeout=5) == "unknown_outcome"
    async with uow(write=False) as u:
        row = u.outbox._s.outbox[lease.id]
    assert (row.state, row.attempts, row.state_data["outcome_unknown"]) == ("pending", 1, True)
    timeline = [t.kind for t in await _timeline(uow, gid)]
    assert timeline[-1] == "erp.unknown_outcome"


async def _timeline(uow, gid):
    async with uow(write=False) as u:
        return await u.orders.timeline(gid)
