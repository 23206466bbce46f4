"""Intake's group commit on real PostgreSQL (``adapters/db/pg_group.py``): many requests' orders in
one transaction, with every row, one audit chain across processes, conflicts and failures
confined to their own unit."""

from __future__ import annotations

import asyncio
import copy
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.repositories import utcnow
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.errors import Conflict
from gateway.intake import accept_order
from gateway.runtime import load_runtime
from tests.support.storage import make_order

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = msgspec.json.decode((REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json").read_bytes())


def body(n: int) -> bytes:
    payload = copy.deepcopy(SAMPLE)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = 7_000_000_000_000_000_000 + n * 100
    trade["tid_str"] = str(trade["tid"])
    return msgspec.json.encode(payload)


@pytest.fixture
def pg_url(postgres_server) -> str:  # noqa: ANN001
    url = postgres_server.create_database()
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def runtime():  # noqa: ANN201
    return load_runtime(load_config(None, env={}))


async def submit(factory: SqlUnitOfWorkFactory, runtime: Any, raw: bytes):  # noqa: ANN201
    return await accept_order(
        "taobao", raw, shop_header=None, uow_factory=factory, runtime=runtime, clock=SystemClock(), max_bytes=1 << 20
    )


async def test_concurrent_orders_share_transactions_and_store_every_row(pg_url: str, runtime: Any) -> None:
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        bodies = [body(n) for n in range(40)]
        results = await asyncio.gather(*(submit(factory, runtime, b) for b in bodies))
        assert [r.status_code for r in results] == [202] * 40
        committer = factory.group_committer
        assert committer is not None and committer.grouped_units == 40 and committer.groups < 40
        async with db.engine.connect() as conn:
            counts = {
                table: (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()
                for table in ("orders", "order_bindings", "order_timeline", "outbox", "raw_payloads", "audit_log")
            }
            assert counts == dict.fromkeys(counts, 40)
            stored = (await conn.execute(text("SELECT body FROM raw_payloads ORDER BY size, sha256"))).scalars()
            assert sorted(zlib.decompress(b) for b in stored) == sorted(bodies)
        async with factory(write=False) as uow:
            order = await uow.orders.get(results[0].order_id)
            assert order is not None and order.state == "accepted" and order.canonical["order_id"]
            assert [t.kind for t in await uow.orders.timeline(order.id)] == ["order.accepted"]
            assert await uow.outbox.pending_count() == 40
            check = await uow.audit.verify()
            assert (check.ok, check.checked) == (True, 40)
            entries = await uow.audit.list(after_seq=0, limit=100)
            assert sorted(e.subject_id for e in entries) == sorted(r.order_id for r in results)
    finally:
        await db.dispose()


async def test_one_chain_when_other_processes_append_between_groups(pg_url: str, runtime: Any) -> None:
    """Two engines stand for two processes; a third appends through the Core path meanwhile. Each
    committer's remembered head goes stale and the conditional head update catches it."""
    engines = [create_engine(pg_url) for _ in range(3)]
    try:
        a, b, other = (SqlUnitOfWorkFactory(db) for db in engines)

        async def plain_appends() -> None:
            for n in range(15):
                async with other() as uow:
                    await uow.audit.append(
                        actor="cli", action="api_key.created", subject_type="api_key", subject_id=f"k{n}", data={}
                    )
                    await uow.commit()
                await asyncio.sleep(0)

        async def wave(factory: SqlUnitOfWorkFactory, first: int) -> None:
            for k in range(5):
                bodies = [body(first + 10 * k + i) for i in range(10)]
                results = await asyncio.gather(*(submit(factory, runtime, x) for x in bodies))
                assert {r.status_code for r in results} == {202}

        await asyncio.gather(wave(a, 1000), wave(b, 2000), plain_appends())
        async with a(write=False) as uow:
            check = await uow.audit.verify()
        assert (check.ok, check.checked) == (True, 115)
    finally:
        for db in engines:
            await db.dispose()


async def test_a_repeat_in_the_same_group_is_a_conflict_and_then_a_200(pg_url: str, runtime: Any) -> None:
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        same = body(1)
        results = await asyncio.gather(*(submit(factory, runtime, same) for _ in range(6)))
        assert sorted(r.status_code for r in results) == [200] * 5 + [202]
        assert len({r.order_id for r in results}) == 1
        async with factory(write=False) as uow:
            assert (await uow.audit.verify()).checked == 1
            assert await uow.outbox.pending_count() == 1
    finally:
        await db.dispose()


async def test_a_failing_unit_fails_alone_and_its_group_is_stored(pg_url: str) -> None:
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        assert factory.group_commit is not None

        async def store(n: int, **overrides: Any) -> None:
            order = make_order(n, **overrides)
            async with factory.group_commit() as uow:
                await uow.payloads.put(order.payload_sha256, b"raw %d" % n)
                await uow.orders.add(order)
                await uow.orders.add_timeline(order.id, "order.accepted", {"n": n})
                await uow.audit.append(
                    actor="t", action="order.accepted", subject_type="order", subject_id=order.id, data={}
                )
                await uow.outbox.add(order_id=order.id, target="u8", kind="deliver", available_at=utcnow())
                await uow.commit()

        results = await asyncio.gather(
            store(1), store(2, shop_id="x" * 500), store(3), store(1, id="01OTHER"), return_exceptions=True
        )
        # The group's statement fails on the value too long; then each unit is written alone, in order.
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], Exception) and not isinstance(results[1], Conflict)
        assert isinstance(results[3], Conflict)  # order 1's binding is taken
        async with factory(write=False) as uow:
            page = await uow.orders.list(platform=None, platform_order_id=None, cursor=None, limit=10)
            assert sorted(o.id for o in page.items) == ["01ORDER000001", "01ORDER000003"]
            check = await uow.audit.verify()
            assert (check.ok, check.checked) == (True, 2)
    finally:
        await db.dispose()


async def test_leaving_without_commit_writes_nothing(pg_url: str) -> None:
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        order = make_order(5)
        async with factory.group_commit() as uow:  # type: ignore[misc]
            await uow.orders.add(order)
            await uow.audit.append(actor="t", action="x", subject_type="order", subject_id=order.id, data={})
        async with factory(write=False) as uow:
            assert await uow.orders.get(order.id) is None
            assert (await uow.audit.verify()).checked == 0
    finally:
        await db.dispose()
