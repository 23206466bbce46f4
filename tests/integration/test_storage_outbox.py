"""The outbox port on fake, SQLite and PostgreSQL: claims, leases, fencing, order per order,
deferral, and the per-target backlog that stop-the-line reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters.db.engine import Database, create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from tests.support.storage import T0, add_orders, add_outbox, claim, make_order

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- outbox


async def test_outbox_claim_finish_and_counts(storage):
    await add_orders(storage, make_order(1), make_order(2))
    first = await add_outbox(storage, make_order(1).id)
    later = await add_outbox(storage, make_order(2).id, available_at=T0 + timedelta(minutes=5))
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.pending_count() == 2
        assert await uow.outbox.next_due_at() == T0

    (lease,) = await claim(storage)
    assert (lease.id, lease.order_id, lease.target, lease.kind) == (
        first,
        make_order(1).id,
        "u8",
        "saleorder",
    )
    assert (lease.attempts, lease.token, lease.state_data) == (0, 1, {})
    assert lease.lease_expires_at == T0 + timedelta(seconds=30)
    assert await claim(storage) == []  # leased, and the other is not due yet

    async with storage.uow() as uow:
        assert await uow.outbox.finish(lease, now=T0) is True
        assert await uow.outbox.finish(lease, now=T0) is False  # already done
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.pending_count() == 1
        assert await uow.outbox.next_due_at() == T0 + timedelta(minutes=5)
    assert [x.id for x in await claim(storage, T0 + timedelta(minutes=5))] == [later]


async def test_outbox_expired_lease_is_reclaimed_and_the_stale_token_fenced(storage):
    await add_orders(storage, make_order(1))
    await add_outbox(storage, make_order(1).id)
    (old,) = await claim(storage, owner="w1", lease=30)
    assert await claim(storage, T0 + timedelta(seconds=29), owner="w2") == []  # lease still held
    (new,) = await claim(storage, T0 + timedelta(seconds=31), owner="w2")
    assert new.id == old.id and new.token == old.token + 1

    async with storage.uow() as uow:
        now = T0 + timedelta(seconds=32)
        assert await uow.outbox.finish(old, now=now) is False
        assert await uow.outbox.reschedule(old, now=now, available_at=now, error="x", state_data={}) is False
        assert await uow.outbox.bury(old, now=now, error="x") is False
        assert await uow.outbox.finish(new, now=now) is True
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.pending_count() == 0


async def test_outbox_reschedule_bury_and_requeue(storage):
    await add_orders(storage, make_order(1))
    outbox_id = await add_outbox(storage, make_order(1).id)
    (lease,) = await claim(storage)
    retry_at = T0 + timedelta(seconds=90)
    async with storage.uow() as uow:
        ok = await uow.outbox.reschedule(
            lease, now=T0, available_at=retry_at, error="ERP down", state_data={"outcome_unknown": True}
        )
        assert ok is True
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.next_due_at() == retry_at
    assert await claim(storage, retry_at - timedelta(seconds=1)) == []
    (second,) = await claim(storage, retry_at)
    assert (second.attempts, second.token, second.state_data) == (1, 2, {"outcome_unknown": True})

    async with storage.uow() as uow:
        assert await uow.outbox.requeue(outbox_id, now=retry_at) is False  # not dead
        assert await uow.outbox.bury(second, now=retry_at, error="rejected") is True
        await uow.commit()
    assert await claim(storage, T0 + timedelta(days=1)) == []
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.pending_count() == 0
        assert await uow.outbox.next_due_at() is None

    replay_at = T0 + timedelta(hours=1)
    async with storage.uow() as uow:
        assert await uow.outbox.requeue(outbox_id, now=replay_at, state_data={"dictionary": "current"}) is True
        await uow.commit()
    (replayed,) = await claim(storage, replay_at)
    assert (replayed.id, replayed.attempts, replayed.token) == (outbox_id, 0, 3)
    # A replay still looks the document up first, and counts interrupted claims from here.
    assert replayed.state_data == {"outcome_unknown": True, "token_base": 2, "deferrals": 0, "dictionary": "current"}


async def test_outbox_keeps_each_orders_rows_in_order(storage):
    await add_orders(storage, make_order(1), make_order(2))
    a1 = await add_outbox(storage, make_order(1).id)
    a2 = await add_outbox(storage, make_order(1).id)
    b1 = await add_outbox(storage, make_order(2).id)

    leases = await claim(storage, limit=10)
    assert [x.id for x in leases] == [a1, b1]  # a2 waits behind a1
    a1_lease, b1_lease = leases
    assert await claim(storage, T0 + timedelta(seconds=1)) == []

    async with storage.uow() as uow:  # a1 fails for now: a2 must still wait
        later = T0 + timedelta(minutes=10)
        await uow.outbox.reschedule(a1_lease, now=T0, available_at=later, error="busy", state_data={})
        await uow.outbox.finish(b1_lease, now=T0)
        await uow.commit()
    assert await claim(storage, T0 + timedelta(minutes=1)) == []
    (a1_again,) = await claim(storage, T0 + timedelta(minutes=10))
    async with storage.uow() as uow:
        await uow.outbox.finish(a1_again, now=T0)
        await uow.commit()
    assert [x.id for x in await claim(storage, T0 + timedelta(minutes=10))] == [a2]


async def test_outbox_claims_expired_leases_then_the_earliest_due(storage):
    await add_orders(storage, make_order(1), make_order(2), make_order(3))
    retried = await add_outbox(storage, make_order(1).id, available_at=T0 + timedelta(minutes=2))
    fresh = await add_outbox(storage, make_order(2).id, available_at=T0 + timedelta(minutes=1))
    stuck = await add_outbox(storage, make_order(3).id, available_at=T0)
    (lease,) = await claim(storage, owner="dies", lease=30)
    assert lease.id == stuck
    later = T0 + timedelta(minutes=3)
    assert [x.id for x in await claim(storage, later, limit=1)] == [stuck]  # its lease expired
    assert [x.id for x in await claim(storage, later, limit=1)] == [fresh]  # due before `retried`
    assert [x.id for x in await claim(storage, later, limit=5)] == [retried]


async def claim_one(storage: Any, outbox_id: int, now: datetime = T0, *, owner: str = "w1", lease: float = 30):
    async with storage.uow() as uow:
        got = await uow.outbox.claim_one(outbox_id, owner=owner, now=now, lease_seconds=lease)
        await uow.commit()
    return got


async def test_outbox_claim_one_takes_that_row_only_when_claimable(storage):
    await add_orders(storage, make_order(1), make_order(2))
    a1 = await add_outbox(storage, make_order(1).id)
    a2 = await add_outbox(storage, make_order(1).id)
    later = await add_outbox(storage, make_order(2).id, available_at=T0 + timedelta(minutes=5))
    assert await claim_one(storage, 999_999) is None  # no such row
    assert await claim_one(storage, later) is None  # not due yet
    assert await claim_one(storage, a2) is None  # waits behind a1 of the same order

    lease = await claim_one(storage, a1, owner="w1")
    assert lease is not None and (lease.id, lease.attempts, lease.token) == (a1, 0, 1)
    assert lease.lease_expires_at == T0 + timedelta(seconds=30)
    assert await claim_one(storage, a1, T0 + timedelta(seconds=29), owner="w2") is None  # leased by w1
    stolen = await claim_one(storage, a1, T0 + timedelta(seconds=31), owner="w2")  # w1's lease expired
    assert stolen is not None and stolen.token == 2
    async with storage.uow() as uow:
        assert await uow.outbox.finish(lease, now=T0) is False  # fenced
        assert await uow.outbox.finish(stolen, now=T0) is True
        await uow.commit()
    assert await claim_one(storage, a1, T0 + timedelta(minutes=1)) is None  # done
    assert (await claim_one(storage, a2, T0 + timedelta(minutes=1))).id == a2


async def test_outbox_due_lists_what_a_claim_would_take_without_claiming(storage):
    await add_orders(storage, make_order(1), make_order(2), make_order(3))
    a1 = await add_outbox(storage, make_order(1).id)
    await add_outbox(storage, make_order(1).id)  # behind a1
    b1 = await add_outbox(storage, make_order(2).id, available_at=T0 + timedelta(minutes=1))
    c1 = await add_outbox(storage, make_order(3).id)
    async with storage.uow(write=False) as uow:
        due = await uow.outbox.due(now=T0, limit=10)
        assert [(d.id, d.token, d.attempts) for d in due] == [(a1, 0, 0), (c1, 0, 0)]
        assert [d.id for d in await uow.outbox.due(now=T0, limit=1)] == [a1]
    (lease,) = await claim(storage, limit=1)  # a1, leased for 30 s
    async with storage.uow(write=False) as uow:
        assert [d.id for d in await uow.outbox.due(now=T0, limit=10)] == [c1]
        expired = await uow.outbox.due(now=T0 + timedelta(minutes=2), limit=10)
        assert [(d.id, d.token) for d in expired] == [(lease.id, 1), (c1, 0), (b1, 0)]  # earliest due first


async def test_outbox_defer_returns_the_row_without_counting_an_attempt(storage):
    await add_orders(storage, make_order(1))
    outbox_id = await add_outbox(storage, make_order(1).id)
    (lease,) = await claim(storage)
    soon = T0 + timedelta(seconds=5)
    async with storage.uow() as uow:
        assert await uow.outbox.defer(lease, now=T0, available_at=soon) is True
        assert await uow.outbox.defer(lease, now=T0, available_at=soon) is False  # no longer leased
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.outbox.next_due_at() == soon
        assert await uow.outbox.pending_count() == 1
    assert await claim_one(storage, outbox_id, soon - timedelta(seconds=1)) is None
    again = await claim_one(storage, outbox_id, soon)
    assert (again.attempts, again.token, again.state_data) == (0, 2, {"deferrals": 1})
    stale = msgspec.structs.replace(again, token=1)
    async with storage.uow() as uow:
        assert await uow.outbox.defer(stale, now=soon, available_at=soon) is False  # fenced by token
        await uow.commit()


async def test_outbox_concurrent_claimers_never_share_a_row(storage):
    orders = [make_order(n) for n in range(1, 21)]
    await add_orders(storage, *orders)
    for o in orders:
        await add_outbox(storage, o.id)

    extra: list[Database] = []
    if storage.kind == "postgresql":
        extra = [create_engine(storage.url) for _ in range(4)]
        factories = [SqlUnitOfWorkFactory(db) for db in extra] + [storage.uow]
        # Everyone claims before anyone commits: only SKIP LOCKED lets them all through.
        barrier: asyncio.Barrier | None = asyncio.Barrier(len(factories))
    else:
        factories = [storage.uow] * 5
        barrier = None  # one writer at a time; waiting on each other would deadlock

    async def claimer(n: int, factory: Any) -> list[int]:
        async with factory() as uow:
            leases = await uow.outbox.claim(owner=f"w{n}", now=T0, lease_seconds=30, limit=4)
            if barrier is not None:
                await barrier.wait()
            await uow.commit()
        return [x.id for x in leases]

    try:
        async with asyncio.timeout(20):
            claimed = await asyncio.gather(*(claimer(n, f) for n, f in enumerate(factories)))
    finally:
        for db in extra:
            await db.dispose()
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == len(set(ids)) == 20
    assert all(len(batch) == 4 for batch in claimed)


# --------------------------------------------------------------------------- stop the line


async def test_outbox_backlog_per_target_counts_pending_and_leased_rows(storage):
    a, b, c = await add_orders(storage, make_order(1), make_order(2), make_order(3))
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = await add_outbox(storage, a.id)
    await add_outbox(storage, b.id)
    async with storage.uow() as uow:
        await uow.outbox.add(order_id=c.id, target="kis", kind="saleorder", available_at=T0)
        await uow.commit()
    [lease] = await claim(storage, limit=1)  # one leased: still undelivered
    assert lease.id == first
    async with storage.uow(write=False) as uow:
        backlog = await uow.outbox.backlog()
    assert backlog["u8"].count == 2 and backlog["kis"].count == 1
    oldest = backlog["u8"].oldest_created_at
    assert oldest is not None and oldest.tzinfo is not None and before <= oldest <= datetime.now(UTC)
    async with storage.uow() as uow:
        assert await uow.outbox.finish(lease, now=T0)
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert (await uow.outbox.backlog())["u8"].count == 1


async def test_target_controls_compare_and_set(storage):
    from gateway.stopline import Control

    stopped = Control(target="u8", state="stopped", by="auto", changed_at=T0, data={"backlog": 5})
    async with storage.uow() as uow:
        assert await uow.controls.put(stopped)
        assert not await uow.controls.put(stopped)  # version 0 again: the row exists
        await uow.commit()
    async with storage.uow(write=False) as uow:
        stored = (await uow.controls.all())["u8"]
    assert stored.state == "stopped" and stored.version == 1 and stored.data == {"backlog": 5}
    assert stored.changed_at == T0 and stored.armed
    resumed = msgspec.structs.replace(stored, state="running", by="it", armed=False)
    async with storage.uow() as uow:
        assert await uow.controls.put(resumed)
        assert not await uow.controls.put(resumed)  # stale version
        await uow.commit()
    async with storage.uow(write=False) as uow:
        stored = (await uow.controls.all())["u8"]
    assert (stored.state, stored.by, stored.armed, stored.version) == ("running", "it", False, 2)


async def test_many_claimers_run_each_orders_rows_one_at_a_time_in_commit_order(storage):
    """Eight concurrent workers claim rows by id (as arq jobs do, in any order): the rows of one
    order are never leased at the same time, and they finish in the order they were committed."""
    orders = [make_order(n) for n in range(1, 5)]
    await add_orders(storage, *orders)
    rows: dict[int, str] = {}
    for _ in range(4):  # interleaved: four rows per order
        for order in orders:
            rows[await add_outbox(storage, order.id)] = order.id
    holding: dict[str, int] = {}  # order → the row leased now
    finished: dict[str, list[int]] = {o.id: [] for o in orders}
    overlaps: list[tuple[int, int]] = []

    async def worker(n: int) -> None:
        pending = list(rows)
        while any(len(done) < 4 for done in finished.values()):
            for outbox_id in pending[n % len(pending) :] + pending[: n % len(pending)]:
                lease = await claim_one(storage, outbox_id, owner=f"w{n}")
                if lease is None:
                    continue
                if lease.order_id in holding:
                    overlaps.append((holding[lease.order_id], lease.id))
                holding[lease.order_id] = lease.id
                await asyncio.sleep(0)  # let the others try the same order meanwhile
                finished[lease.order_id].append(lease.id)
                async with storage.uow() as uow:
                    assert await uow.outbox.finish(lease, now=T0)
                    await uow.commit()
                    del holding[lease.order_id]  # no other task runs between the commit and this
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(8))), timeout=60)
    assert overlaps == []
    for order in orders:
        assert finished[order.id] == sorted(i for i, o in rows.items() if o == order.id)
