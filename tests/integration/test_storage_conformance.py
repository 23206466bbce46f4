"""Every storage implementation honours the storage ports the same way: the in-memory fakes, SQLite
and PostgreSQL run these suites (the ``storage`` fixture in ``tests/conftest.py``). This one:
orders and the binder, payloads, intercepts, dead letters, API keys and the schema; the outbox,
the audit chain and SQLite's writer have their own files."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.db.migrate import alembic_config, current
from gateway.errors import Conflict, PayloadInvalid
from gateway.ports import ApiKeyRecord, DeadLetter, InterceptRecord
from tests.support.storage import T0, add_orders, add_outbox, make_order

pytestmark = pytest.mark.integration


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
    from alembic.script import ScriptDirectory

    from adapters.db.tables import metadata

    config = alembic_config(storage.url)
    assert config.get_main_option("script_location").endswith("migrations")
    assert current(storage.url) == ScriptDirectory.from_config(config).get_current_head()  # one head
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
