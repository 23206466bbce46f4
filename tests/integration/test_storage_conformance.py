"""Every storage implementation honours the storage ports the same way: the in-memory fakes, SQLite
and PostgreSQL run this one suite (the ``storage`` fixture in ``tests/conftest.py``). The last
section checks what only SQLite has: its pragmas, BEGIN IMMEDIATE and the group commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from adapters.db.engine import Database, create_engine
from adapters.db.migrate import alembic_config, current
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.errors import Conflict, PayloadInvalid
from gateway.ports import ApiKeyRecord, DeadLetter, InterceptRecord, OrderRecord

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def make_order(n: int, **overrides: Any) -> OrderRecord:
    fields: dict[str, Any] = {
        "id": f"01ORDER{n:06d}",
        "platform": "taobao",
        "shop_id": "demo-taobao",
        "platform_order_id": f"TB{n:08d}",
        "platform_version": "v1",
        "state": "accepted",
        "canonical": {"order_id": f"TB{n:08d}", "lines": [{"sku": "A-1", "qty": 2, "price": "9.90"}]},
        "mapping_version": "m1",
        "rules_version": "r1",
        "payload_sha256": f"{n:064x}",
    }
    fields.update(overrides)
    return OrderRecord(**fields)


async def add_orders(storage: Any, *orders: OrderRecord) -> list[OrderRecord]:
    async with storage.uow() as uow:
        stored = [await uow.orders.add(o) for o in orders]
        await uow.commit()
    return stored


async def add_outbox(storage: Any, order_id: str, available_at: datetime = T0) -> int:
    async with storage.uow() as uow:
        outbox_id = await uow.outbox.add(order_id=order_id, target="u8", kind="saleorder", available_at=available_at)
        await uow.commit()
    return outbox_id


async def claim(storage: Any, now: datetime = T0, *, owner: str = "w1", limit: int = 10, lease: float = 30):
    async with storage.uow() as uow:
        leases = await uow.outbox.claim(owner=owner, now=now, lease_seconds=lease, limit=limit)
        await uow.commit()
    return leases


# --------------------------------------------------------------------------- orders and binder


async def test_order_add_get_and_binding(storage):
    (stored,) = await add_orders(storage, make_order(1))
    assert isinstance(stored.seq, int) and stored.seq > 0
    assert stored.created_at is not None and stored.created_at.utcoffset() == timedelta(0)

    async with storage.uow(write=False) as uow:
        got = await uow.orders.get(stored.id)
        binding = await uow.orders.find_binding("taobao", "demo-taobao", "TB00000001")
        assert await uow.orders.get("nope") is None
        assert await uow.orders.find_binding("taobao", "other-shop", "TB00000001") is None
    assert got == stored
    assert got.canonical["lines"][0]["price"] == "9.90"
    assert binding.order_id == stored.id
    assert (binding.platform_version, binding.payload_sha256) == ("v1", f"{1:064x}")
    assert binding.erp_document_no is None


async def test_binder_refuses_a_second_copy_of_a_platform_order(storage):
    (first,) = await add_orders(storage, make_order(1))
    with pytest.raises(Conflict):
        async with storage.uow() as uow:
            await uow.orders.add(make_order(2, platform_order_id=first.platform_order_id))
            await uow.commit()
    (second,) = await add_orders(storage, make_order(3))  # the failed transaction left nothing behind
    assert second.seq > first.seq
    async with storage.uow(write=False) as uow:
        assert await uow.orders.get(make_order(2).id) is None


async def test_replace_canonical_state_erp_and_timeline(storage):
    (stored,) = await add_orders(storage, make_order(1))
    async with storage.uow() as uow:
        await uow.orders.replace_canonical(
            stored.id,
            canonical={"order_id": "TB00000001", "note": "v2"},
            platform_version="v2",
            payload_sha256="b" * 64,
        )
        await uow.orders.set_state(stored.id, "delivering")
        await uow.orders.add_timeline(stored.id, "accepted", {"by": "intake"})
        await uow.orders.add_timeline(stored.id, "delivering", {"target": "u8", "n": 1})
        await uow.orders.set_erp(stored.id, target="u8", document_no="SO-0001", status="delivered")
        await uow.commit()
    async with storage.uow() as uow:  # a later failure without a number keeps the recorded one
        await uow.orders.set_erp(stored.id, target="u8", document_no=None, status="failed")
        await uow.commit()

    async with storage.uow(write=False) as uow:
        order = await uow.orders.get(stored.id)
        binding = await uow.orders.find_binding("taobao", "demo-taobao", "TB00000001")
        timeline = await uow.orders.timeline(stored.id)
    assert order.canonical == {"order_id": "TB00000001", "note": "v2"}
    assert (order.platform_version, order.payload_sha256, order.state) == ("v2", "b" * 64, "delivering")
    assert (order.erp_target, order.erp_document_no, order.erp_status) == ("u8", "SO-0001", "failed")
    assert order.updated_at >= order.created_at
    assert (binding.platform_version, binding.payload_sha256) == ("v2", "b" * 64)
    assert (binding.erp_target, binding.erp_document_no) == ("u8", "SO-0001")
    assert [(e.kind, e.detail) for e in timeline] == [
        ("accepted", {"by": "intake"}),
        ("delivering", {"target": "u8", "n": 1}),
    ]
    assert all(e.at.utcoffset() == timedelta(0) for e in timeline)


async def test_order_list_filters_and_cursor(storage):
    await add_orders(
        storage,
        *[make_order(n) for n in range(1, 6)],
        make_order(6, platform="jd", shop_id="demo-jd"),
    )
    seen: list[str] = []
    cursor = None
    async with storage.uow(write=False) as uow:
        while True:
            page = await uow.orders.list(platform="taobao", platform_order_id=None, cursor=cursor, limit=2)
            seen += [o.id for o in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        one = await uow.orders.list(platform=None, platform_order_id="TB00000003", cursor=None, limit=10)
        with pytest.raises(PayloadInvalid):
            await uow.orders.list(platform=None, platform_order_id=None, cursor="not a cursor!", limit=2)
    assert seen == [make_order(n).id for n in (5, 4, 3, 2, 1)]  # newest first, each once
    assert [o.id for o in one.items] == [make_order(3).id] and one.next_cursor is None


# --------------------------------------------------------------------------- payloads


async def test_payload_round_trip_and_dedupe(storage):
    body = ('{"tid": "TB1", "buyer": "张三", "lines": [' + ",".join(['{"sku": "A-1"}'] * 200) + "]}").encode()
    async with storage.uow() as uow:
        await uow.payloads.put("a" * 64, body)
        await uow.payloads.put("a" * 64, b"something else")  # same hash: a no-op
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.payloads.get("a" * 64) == body
        assert await uow.payloads.get("f" * 64) is None
    if storage.db is not None:
        async with storage.db.engine.connect() as conn:
            size, stored = (await conn.execute(text("SELECT size, length(body) FROM raw_payloads"))).one()
        assert size == len(body) and stored < len(body) / 5  # compressed


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
        assert await uow.outbox.requeue(outbox_id, now=replay_at) is True
        await uow.commit()
    (replayed,) = await claim(storage, replay_at)
    assert (replayed.id, replayed.attempts, replayed.token) == (outbox_id, 0, 3)
    assert replayed.state_data == {"outcome_unknown": True}  # a replay still looks the document up first


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


# --------------------------------------------------------------------------- intercepts, dead letters


def make_intercept(n: int, *, rules: list[str], platform: str = "taobao", shop: str = "demo-taobao", at=T0):
    return InterceptRecord(
        id=f"01INT{n:06d}",
        platform=platform,
        shop_id=shop,
        platform_order_id=f"P{n}",
        rule_codes=rules,
        verdict="hold",
        violations=[{"rule": r, "message_en": "over limit"} for r in rules],
        mapping_version="m1",
        rules_version="r1",
        payload_sha256=f"{n:064x}",
        snapshot={"buyer": {"name": "张*"}},
        created_at=at,
    )


async def test_intercept_filters_and_cursor(storage):
    records = [
        make_intercept(1, rules=["AMOUNT_LIMIT"], at=T0),
        make_intercept(2, rules=["AMOUNT_LIMIT", "BLACKLIST"], at=T0 + timedelta(hours=1)),
        make_intercept(3, rules=["BLACKLIST"], platform="jd", shop="demo-jd", at=T0 + timedelta(hours=2)),
        make_intercept(4, rules=["AMOUNT_LIMIT"], at=T0 + timedelta(hours=3)),
    ]
    async with storage.uow() as uow:
        for r in records:
            await uow.intercepts.add(r)
        await uow.commit()

    async def ids(**filters: Any) -> list[str]:
        args = {"rule": None, "platform": None, "shop": None, "since": None, "until": None, "cursor": None}
        args.update(filters)
        async with storage.uow(write=False) as uow:
            page = await uow.intercepts.list(limit=10, **args)
        assert page.next_cursor is None
        return [r.id for r in page.items]

    def want(*ns: int) -> list[str]:
        return [f"01INT{n:06d}" for n in ns]

    assert await ids() == want(4, 3, 2, 1)
    assert await ids(rule="AMOUNT_LIMIT") == want(4, 2, 1)
    assert await ids(rule="BLACKLIST", platform="taobao") == want(2)
    assert await ids(shop="demo-jd") == want(3)
    assert await ids(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)) == want(3, 2)

    async with storage.uow(write=False) as uow:
        first = await uow.intercepts.list(
            rule="AMOUNT_LIMIT", platform=None, shop=None, since=None, until=None, cursor=None, limit=2
        )
        rest = await uow.intercepts.list(
            rule="AMOUNT_LIMIT",
            platform=None,
            shop=None,
            since=None,
            until=None,
            cursor=first.next_cursor,
            limit=2,
        )
    assert [r.id for r in first.items] == want(4, 2) and first.next_cursor
    assert [r.id for r in rest.items] == want(1) and rest.next_cursor is None
    assert rest.items[0] == records[0]


async def test_dead_letters(storage):
    await add_orders(storage, make_order(1))
    outbox_id = await add_outbox(storage, make_order(1).id)
    letters = [
        DeadLetter(
            id=f"01DL{n}",
            outbox_id=outbox_id,
            order_id=make_order(1).id,
            target="u8",
            reason_code="ERP_REJECTED",
            message_en="rejected",
            message_zh="被拒绝",
            partner_message="存货编码不存在" if n == 1 else None,
            hint="map the SKU",
            attempts=n,
        )
        for n in (1, 2, 3)
    ]
    async with storage.uow() as uow:
        for letter in letters:
            await uow.dead_letters.add(letter)
        await uow.dead_letters.mark_replayed("01DL2", now=T0)
        await uow.commit()

    async with storage.uow(write=False) as uow:
        got = await uow.dead_letters.get("01DL1")
        assert await uow.dead_letters.get("missing") is None
        open_ = await uow.dead_letters.list(cursor=None, limit=10, include_replayed=False)
        page1 = await uow.dead_letters.list(cursor=None, limit=2, include_replayed=True)
        page2 = await uow.dead_letters.list(cursor=page1.next_cursor, limit=2, include_replayed=True)
    assert got.partner_message == "存货编码不存在" and got.created_at is not None and got.replayed_at is None
    assert [d.id for d in open_.items] == ["01DL3", "01DL1"]
    assert [d.id for d in page1.items + page2.items] == ["01DL3", "01DL2", "01DL1"]
    assert page1.items[1].replayed_at == T0 and page2.next_cursor is None


# --------------------------------------------------------------------------- audit


async def append(factory: Any, n: int) -> None:
    async with factory() as uow:
        await uow.audit.append(
            actor=f"task-{n % 8}",
            action="order.accepted",
            subject_type="order",
            subject_id=f"o{n}",
            data={"n": n},
        )
        await uow.commit()


async def read_audit(storage: Any) -> list[Any]:
    async with storage.uow(write=False) as uow:
        first = await uow.audit.list(after_seq=0, limit=30)
        rest = await uow.audit.list(after_seq=30, limit=100)
    return [*first, *rest]


async def test_audit_chain_from_concurrent_writers(storage):
    async def task(k: int) -> None:
        for n in range(k, 50, 8):
            await append(storage.uow, n)

    await asyncio.gather(*(task(k) for k in range(8)))
    entries = await read_audit(storage)
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.checked, check.broken_at) == (True, 50, None)
    assert [e.seq for e in entries] == list(range(1, 51))
    assert sorted(e.data["n"] for e in entries) == list(range(50))
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert datetime.fromisoformat(entries[0].at).utcoffset() == timedelta(0)


async def test_audit_chain_from_several_engines(storage):
    """Several engines stand for several processes (on SQLite they meet at the file lock)."""
    if storage.db is None:
        pytest.skip("the fake lives in one process")
    dbs = [create_engine(storage.url) for _ in range(3)]
    factories = [SqlUnitOfWorkFactory(db) for db in dbs]
    try:

        async def task(k: int) -> None:
            for n in range(k, 50, 8):
                await append(factories[n % 3], n)

        await asyncio.gather(*(task(k) for k in range(8)))
    finally:
        for db in dbs:
            await db.dispose()
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.checked) == (True, 50)
    assert [e.seq for e in await read_audit(storage)] == list(range(1, 51))


async def _drop_audit_triggers(db: Database) -> None:
    on = " ON audit_log" if db.dialect == "postgresql" else ""
    async with db.engine.begin() as conn:
        for name in ("audit_log_no_update", "audit_log_no_delete"):
            await conn.execute(text(f"DROP TRIGGER {name}{on}"))


async def tamper_data(storage: Any, seq: int, data: dict[str, Any]) -> None:
    if storage.db is None:
        storage.uow.state.audit[seq - 1].data = data
        return
    async with storage.db.engine.connect() as conn:  # the triggers refuse first
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("UPDATE audit_log SET data = '{}' WHERE seq = 1"))
    await _drop_audit_triggers(storage.db)
    async with storage.db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET data = :d WHERE seq = :s"), {"d": json.dumps(data), "s": seq})


async def delete_last(storage: Any) -> None:
    if storage.db is None:
        storage.uow.state.audit.pop()
        return
    async with storage.db.engine.connect() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("DELETE FROM audit_log"))
    await _drop_audit_triggers(storage.db)
    async with storage.db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"))


async def test_audit_verify_names_a_tampered_entry(storage):
    for n in range(50):
        await append(storage.uow, n)
    await tamper_data(storage, 17, {"n": 999})
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.broken_at, check.checked) == (False, 17, 16)
    assert check.reason == "entry altered"


async def test_audit_verify_notices_the_last_entry_deleted(storage):
    for n in range(50):
        await append(storage.uow, n)
    await delete_last(storage)
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.broken_at, check.checked) == (False, 50, 49)


async def test_audit_entry_rolls_back_with_its_transaction(storage):
    async with storage.uow() as uow:
        await uow.audit.append(actor="a", action="x", subject_type="order", subject_id="o1", data={})
        # no commit
    async with storage.uow() as uow:
        await uow.audit.append(actor="a", action="x", subject_type="order", subject_id="o2", data={})
        await uow.rollback()
    async with storage.uow(write=False) as uow:
        assert await uow.audit.list(after_seq=0, limit=10) == []
        assert (await uow.audit.verify()).checked == 0
    async with storage.uow() as uow:
        entry = await uow.audit.append(
            actor="a", action="x", subject_type="order", subject_id="o3", data={"amount": (1, "9.90")}
        )
        await uow.commit()
    assert entry.seq == 1 and entry.data == {"amount": [1, "9.90"]}
    async with storage.uow(write=False) as uow:
        assert list(await uow.audit.list(after_seq=0, limit=10)) == [entry]
        assert (await uow.audit.verify()).ok


# --------------------------------------------------------------------------- api keys


async def test_api_keys(storage):
    key = ApiKeyRecord(id="k1", role="auditor", key_hash="c" * 64, label="审计")
    async with storage.uow() as uow:
        await uow.keys.add(key)
        await uow.commit()
    with pytest.raises(Conflict):
        async with storage.uow() as uow:
            await uow.keys.add(ApiKeyRecord(id="k2", role="admin", key_hash="c" * 64))
    async with storage.uow(write=False) as uow:
        found = await uow.keys.find_by_hash("c" * 64)
        assert await uow.keys.find_by_hash("d" * 64) is None
    assert (found.id, found.role, found.label, found.revoked_at) == ("k1", "auditor", "审计", None)
    assert found.created_at is not None and found.created_at.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- schema and engine


async def test_migrations_match_the_tables(storage):
    if storage.db is None:
        pytest.skip("no schema in memory")
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from adapters.db.tables import metadata

    assert current(storage.url) == "0002_target_controls"
    assert alembic_config(storage.url).get_main_option("script_location").endswith("migrations")
    async with storage.db.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert diff == []


async def test_datetimes_must_be_timezone_aware(storage):
    if storage.db is None:
        pytest.skip("the fake stores what it is given")
    await add_orders(storage, make_order(1))
    with pytest.raises(Exception, match="naive datetime"):
        async with storage.uow() as uow:
            await uow.outbox.add(order_id=make_order(1).id, target="u8", kind="x", available_at=datetime(2030, 1, 1))


# --------------------------------------------------------------------------- SQLite's writer (not conformance)


async def test_sqlite_pragmas_and_immediate_writes(tmp_path):
    from adapters.db.migrate import upgrade

    path = tmp_path / "nested" / "g.db"
    url = f"sqlite+aiosqlite:///{path}"
    db = create_engine(url, synchronous="NORMAL")  # creates the folder
    upgrade(url)
    factory = SqlUnitOfWorkFactory(db)
    try:
        async with db.engine.connect() as conn:
            pragmas = [
                (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
        assert pragmas == ["wal", 1, 10000, 1]

        def other_writer_can_begin() -> bool:
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                other.close()

        async with factory(write=False) as uow:
            await uow.orders.get("x")
            assert other_writer_can_begin()  # readers take no write lock
        async with factory() as uow:
            assert db.write_lock.locked()
            assert not other_writer_can_begin()  # BEGIN IMMEDIATE holds the file's write lock
        assert not db.write_lock.locked() and other_writer_can_begin()
    finally:
        await db.dispose()


async def test_sqlite_group_commit_keeps_units_apart(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    from adapters.db.migrate import upgrade

    upgrade(url)
    db = create_engine(url)
    factory = SqlUnitOfWorkFactory(db)
    commits = 0

    @event.listens_for(db.sqlite_writer.engine, "commit")
    def _count(_conn):
        nonlocal commits
        commits += 1

    async def unit(n: int) -> None:
        async with factory() as uow:
            await uow.orders.add(make_order(n))
            await uow.audit.append(actor="t", action="a", subject_type="order", subject_id=str(n), data={})
            if n == 7:
                raise RuntimeError("this unit fails")
            await uow.commit()

    try:
        results = await asyncio.gather(*(unit(n) for n in range(20)), return_exceptions=True)
        assert [n for n, r in enumerate(results) if r is not None] == [7]
        assert 1 <= commits < 19  # grouped
        async with factory(write=False) as uow:
            stored = await uow.orders.list(platform=None, platform_order_id=None, cursor=None, limit=50)
            check = await uow.audit.verify()
        assert sorted(o.id for o in stored.items) == sorted(make_order(n).id for n in range(20) if n != 7)
        assert (check.ok, check.checked) == (True, 19)

        async with factory() as uow:  # work after commit() starts a new unit
            await uow.orders.add(make_order(100))
            await uow.commit()
            await uow.orders.add(make_order(101))
            await uow.commit()
            await uow.orders.add(make_order(102))  # left without commit: rolled back
        assert not db.write_lock.locked()
        async with factory(write=False) as uow:
            assert await uow.orders.get(make_order(101).id) is not None
            assert await uow.orders.get(make_order(102).id) is None

        # A failed group COMMIT fails every unit in the group, stores none, and the writer recovers.
        real_commit = Connection.commit
        failures = 0

        def failing_commit(self):
            nonlocal failures
            if self.engine is db.sqlite_writer.engine and failures == 0:
                failures += 1
                self.rollback()
                raise sqlite3.OperationalError("disk I/O error")
            return real_commit(self)

        monkeypatch.setattr(Connection, "commit", failing_commit)
        results = await asyncio.gather(*(unit(n) for n in range(200, 205)), return_exceptions=True)
        failed = [n for n, r in zip(range(200, 205), results, strict=True) if r is not None]
        assert failures == 1 and failed
        async with factory(write=False) as uow:
            for n in range(200, 205):
                assert (await uow.orders.get(make_order(n).id) is None) == (n in failed)
            assert (await uow.audit.verify()).ok
    finally:
        await db.dispose()


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
