"""Stock and fingerprints on every storage implementation (fakes, SQLite, PostgreSQL): counts that
never go back in time, pending reservations since a count, reservations refused below their
safety stock with nothing changed, exactly one of two orders getting the last unit, and the
fingerprints of the duplicate rule. On PostgreSQL also the grouped intake unit of work."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.repositories import utcnow
from adapters.db.stock import PUT_CHUNK
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.errors import Conflict
from gateway.ports import Reservation, StockLevel, StockReport
from gateway.stock import STOCK_BELOW_FLOOR
from tests.support.storage import T0, make_order

pytestmark = pytest.mark.integration

MIN = timedelta(minutes=1)


def count(sku: str, warehouse: str, on_hand: int, *, reserved: int = 0, as_of=T0) -> StockReport:  # noqa: ANN001
    return StockReport(sku=sku, warehouse=warehouse, on_hand=on_hand, reserved=reserved, as_of=as_of)


def item(sku: str, qty: int, *, warehouse: str = "W1", floor: int | None = None) -> Reservation:
    return Reservation(sku=sku, warehouse=warehouse, qty=qty, floor=floor)


async def put(storage: Any, *reports: StockReport):  # noqa: ANN201
    async with storage.uow() as uow:
        result = await uow.stock.put(list(reports), now=T0)
        await uow.commit()
    return result


async def reserve(storage: Any, order_id: str, *items: Reservation, at=T0 + MIN) -> None:  # noqa: ANN001
    async with storage.uow() as uow:
        await uow.stock.reserve(order_id, list(items), at=at)
        await uow.commit()


def table(found: list[StockLevel]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(sku, warehouse) → (on_hand, reserved, pending, available)."""
    return {(lv.sku, lv.warehouse): (lv.on_hand, lv.reserved, lv.pending, lv.available) for lv in found}


async def levels(storage: Any, *skus: str) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    async with storage.uow(write=False) as uow:
        return table(await uow.stock.levels(list(skus)))


# --------------------------------------------------------------------------- counts


async def test_a_count_replaces_only_an_older_or_equal_one(storage):
    first = await put(storage, count("A", "W1", 10), count("B", "W1", 5), count("A", "W2", 7))
    assert (first.applied, first.stale) == (3, 0)

    again = await put(
        storage,
        count("A", "W1", 99, as_of=T0 - MIN),  # older: ignored
        count("B", "W1", 4, reserved=1, as_of=T0),  # same time: the later report wins
        count("A", "W2", 6, as_of=T0 + MIN),  # newer
        count("C", "W1", 1, as_of=T0 - timedelta(days=300)),  # first count, however old
    )
    assert (again.applied, again.stale) == (3, 1)

    async with storage.uow(write=False) as uow:
        found = await uow.stock.levels(["C", "A", "B", "A"])
    assert [(lv.sku, lv.warehouse) for lv in found] == [("A", "W1"), ("A", "W2"), ("B", "W1"), ("C", "W1")]
    by_key = {(lv.sku, lv.warehouse): lv for lv in found}
    assert (by_key["A", "W1"].on_hand, by_key["A", "W1"].as_of) == (10, T0)
    assert (by_key["A", "W2"].on_hand, by_key["A", "W2"].as_of) == (6, T0 + MIN)
    assert (by_key["B", "W1"].on_hand, by_key["B", "W1"].reserved, by_key["B", "W1"].available) == (4, 1, 3)
    assert by_key["A", "W2"].as_of.utcoffset() == timedelta(0)
    async with storage.uow(write=False) as uow:
        assert await uow.stock.levels([]) == []
        assert await uow.stock.levels(["NO-SUCH-SKU"]) == []


async def test_a_large_report_is_stored_whole(storage):
    reports = [count(f"S{n:05d}", "W1", n) for n in range(PUT_CHUNK * 2 + 500)]
    assert (await put(storage, *reports)).applied == len(reports)
    newer = [
        count(r.sku, r.warehouse, r.on_hand + 1, as_of=T0 + MIN if n % 2 else T0 - MIN) for n, r in enumerate(reports)
    ]
    result = await put(storage, *newer)
    assert (result.applied, result.stale) == (len(reports) // 2, len(reports) - len(reports) // 2)
    got = await levels(storage, "S00000", "S00001", "S02499")
    assert got[("S00000", "W1")][0] == 0 and got[("S00001", "W1")][0] == 2 and got[("S02499", "W1")][0] == 2500


async def test_two_counts_of_one_sku_and_warehouse_in_one_put_are_refused(storage):
    with pytest.raises(ValueError, match="two counts"):
        async with storage.uow() as uow:
            await uow.stock.put([count("A", "W1", 1), count("A", "W1", 2)], now=T0)


# --------------------------------------------------------------------------- pending and reservations


async def test_pending_counts_only_reservations_made_after_the_count(storage):
    await put(storage, count("A", "W1", 10, reserved=2), count("A", "W2", 4))
    await reserve(storage, "o-before", item("A", 3), at=T0 - MIN)  # the count reflects it already
    await reserve(storage, "o-after", item("A", 4), item("A", 1, warehouse="W2"), at=T0 + MIN)
    await reserve(storage, "o-uncounted", item("Z", 5))  # a SKU without a count: no level
    assert await levels(storage, "A", "Z") == {("A", "W1"): (10, 2, 4, 4), ("A", "W2"): (4, 0, 1, 3)}

    await put(storage, count("A", "W1", 6, as_of=T0 + 2 * MIN))  # a new count starts afresh
    assert await levels(storage, "A") == {("A", "W1"): (6, 0, 0, 6), ("A", "W2"): (4, 0, 1, 3)}
    await reserve(storage, "o-next", item("A", 2), at=T0 + 3 * MIN)
    assert (await levels(storage, "A"))[("A", "W1")] == (6, 0, 2, 4)


async def test_the_running_pending_total_follows_late_counts_and_releases(storage):
    """``pending`` is kept as a running total: a count taken before reservations it is reported
    after, reservations made before a SKU's first count, and releases on either side of a count
    all leave it equal to the sum of the reservations after the count."""
    await reserve(storage, "o-early", item("A", 2), at=T0 + MIN)  # no count of A yet
    await put(storage, count("A", "W1", 10, as_of=T0))  # counted before o-early: o-early is pending
    assert await levels(storage, "A") == {("A", "W1"): (10, 0, 2, 8)}
    await reserve(storage, "o-late", item("A", 3), at=T0 + 3 * MIN)
    await put(storage, count("A", "W1", 9, as_of=T0 + 2 * MIN))  # reflects o-early, not o-late
    assert await levels(storage, "A") == {("A", "W1"): (9, 0, 3, 6)}
    async with storage.uow() as uow:
        await uow.stock.release("o-early")  # before the count: the total does not move
        await uow.commit()
    assert await levels(storage, "A") == {("A", "W1"): (9, 0, 3, 6)}
    await reserve(storage, "o-late", item("A", 1), at=T0 + 4 * MIN)  # a new version takes less
    assert await levels(storage, "A") == {("A", "W1"): (9, 0, 1, 8)}


async def test_reserve_replaces_the_orders_reservations_and_release_drops_them(storage):
    await put(storage, count("A", "W1", 10), count("B", "W1", 10))
    await reserve(storage, "o1", item("A", 3), item("B", 1), item("A", 2))  # two lines of one SKU add up
    await reserve(storage, "o2", item("A", 1))
    assert {k: v[2] for k, v in (await levels(storage, "A", "B")).items()} == {("A", "W1"): 6, ("B", "W1"): 1}

    await reserve(storage, "o1", item("A", 2))  # a new version of the order: B is no longer held
    assert {k: v[2] for k, v in (await levels(storage, "A", "B")).items()} == {("A", "W1"): 3, ("B", "W1"): 0}

    async with storage.uow() as uow:
        await uow.stock.release("o1")
        await uow.stock.release("o-never-reserved")
        await uow.commit()
    assert (await levels(storage, "A"))[("A", "W1")][2] == 1
    await reserve(storage, "o2")  # no items: released as well
    assert (await levels(storage, "A"))[("A", "W1")][2] == 0


async def test_a_floor_refusal_is_a_conflict_and_changes_nothing(storage):
    await put(storage, count("A", "W1", 5), count("B", "W1", 5))
    await reserve(storage, "o1", item("A", 2, floor=1))  # 5 - 2 = 3 >= 1
    await reserve(storage, "o2", item("B", 1))
    before = await levels(storage, "A", "B")

    async with storage.uow() as uow:
        with pytest.raises(Conflict) as refused:
            await uow.stock.reserve("o2", [item("B", 1), item("A", 3, floor=1), item("Z", 9, floor=100)], at=T0 + MIN)
        # Even a caller that commits after the refusal has changed nothing.
        assert table(await uow.stock.levels(["A", "B"])) == before
        await uow.commit()
    error = refused.value
    assert error.code == "CONFLICT" and error.status_code == 409
    assert error.details["reason"] == STOCK_BELOW_FLOOR
    # Z has no count: not checked. A: 5 on hand - 2 (o1) = 3 available, 3 wanted, floor 1.
    assert error.details["shortfalls"] == [{"sku": "A", "warehouse": "W1", "qty": 3, "available": 3, "floor": 1}]
    assert "A" in error.message_en and "安全库存" in error.message_zh
    assert await levels(storage, "A", "B") == before  # o2 still holds B, o1 still holds A

    await reserve(storage, "o2", item("A", 2, floor=1), item("B", 1))  # exactly down to the floor: fine
    assert await levels(storage, "A", "B") == {("A", "W1"): (5, 0, 4, 1), ("B", "W1"): (5, 0, 1, 4)}


async def test_the_orders_own_reservation_is_not_counted_against_it(storage):
    await put(storage, count("A", "W1", 3, reserved=1))
    await reserve(storage, "o1", item("A", 2, floor=0))
    await reserve(storage, "o1", item("A", 2, floor=0))  # the same order again (a newer version)
    await reserve(storage, "o1", item("A", 1, floor=1))  # fewer, with a floor: 3 - 1 - 1 = 1
    assert (await levels(storage, "A"))[("A", "W1")] == (3, 1, 1, 1)
    with pytest.raises(Conflict):
        await reserve(storage, "o2", item("A", 2, floor=0))
    await reserve(storage, "o2", item("A", 1, floor=0))
    assert (await levels(storage, "A"))[("A", "W1")] == (3, 1, 2, 0)


async def test_of_two_orders_for_the_last_unit_exactly_one_gets_it(storage):
    await put(storage, count("A", "W1", 1))

    async def second() -> None:
        # Begins while the first holds its reservation uncommitted: PostgreSQL waits for the row
        # lock, SQLite and the fakes for the writer; then the unit is gone.
        async with storage.uow() as uow:
            await uow.stock.reserve("o2", [item("A", 1, floor=0)], at=T0 + MIN)
            await uow.commit()

    async with storage.uow() as uow:
        await uow.stock.reserve("o1", [item("A", 1, floor=0)], at=T0 + MIN)
        task = asyncio.create_task(second())
        await asyncio.sleep(0.2)
        assert not task.done()
        await uow.commit()
    with pytest.raises(Conflict):
        await task
    assert (await levels(storage, "A"))[("A", "W1")] == (1, 0, 1, 0)


# --------------------------------------------------------------------------- fingerprints


async def test_fingerprints_add_once_and_match_since_excluding_the_order(storage):
    async with storage.uow() as uow:
        await uow.fingerprints.add(
            "fp1", order_id="o1", platform="taobao", shop_id="s1", platform_order_id="TB1", at=T0
        )
        await uow.fingerprints.add(  # a repeat: the first record stays
            "fp1", order_id="o1", platform="taobao", shop_id="s1", platform_order_id="TB1", at=T0 + 9 * MIN
        )
        await uow.fingerprints.add(
            "fp1", order_id="o2", platform="jd", shop_id="s2", platform_order_id="JD2", at=T0 + MIN
        )
        await uow.fingerprints.add("fp2", order_id="o3", platform="jd", shop_id="s2", platform_order_id="JD3", at=T0)
        await uow.commit()
    async with storage.uow() as uow:  # again in a later transaction: still a no-op
        await uow.fingerprints.add(
            "fp1", order_id="o1", platform="taobao", shop_id="s1", platform_order_id="TB1", at=T0 + 5 * MIN
        )
        await uow.commit()

    async with storage.uow(write=False) as uow:
        every = await uow.fingerprints.matches("fp1", since=T0 - timedelta(days=1), exclude_order_id=None)
        assert [(m.order_id, m.platform, m.shop_id, m.platform_order_id, m.at) for m in every] == [
            ("o1", "taobao", "s1", "TB1", T0),
            ("o2", "jd", "s2", "JD2", T0 + MIN),
        ]
        assert every[0].at.utcoffset() == timedelta(0)
        others = await uow.fingerprints.matches("fp1", since=T0, exclude_order_id="o1")
        assert [m.order_id for m in others] == ["o2"]
        since = await uow.fingerprints.matches("fp1", since=T0 + MIN, exclude_order_id=None)  # inclusive
        assert [m.order_id for m in since] == ["o2"]
        assert await uow.fingerprints.matches("fp1", since=T0 + 2 * MIN, exclude_order_id=None) == []
        assert [m.order_id for m in await uow.fingerprints.matches("fp2", since=T0, exclude_order_id="o1")] == ["o3"]
        assert await uow.fingerprints.matches("fp-none", since=T0, exclude_order_id=None) == []


# --------------------------------------------------------------------------- PostgreSQL only


async def test_many_concurrent_orders_never_oversell_nor_deadlock(storage):
    if storage.kind != "postgresql":
        pytest.skip("concurrent transactions: PostgreSQL (SQLite and the fakes have one writer)")
    await put(storage, count("A", "W1", 3), count("B", "W1", 1000), count("C", "W1", 1000))
    rng = random.Random(7)

    async def one(n: int) -> bool:
        skus = ["A", "B", "C"]
        rng.shuffle(skus)  # items in any order: the rows are locked in key order all the same
        try:
            async with storage.uow() as uow:
                await uow.stock.reserve(f"o{n}", [item(s, 1, floor=0) for s in skus], at=T0 + MIN)
                await asyncio.sleep(0.01)  # hold the locks a moment
                await uow.commit()
        except Conflict:
            return False
        return True

    won = await asyncio.gather(*(one(n) for n in range(12)))
    assert sum(won) == 3
    got = await levels(storage, "A", "B", "C")
    assert got == {("A", "W1"): (3, 0, 3, 0), ("B", "W1"): (1000, 0, 3, 997), ("C", "W1"): (1000, 0, 3, 997)}


@pytest.fixture
def pg_url(postgres_server) -> str:  # noqa: ANN001
    url = postgres_server.create_database()
    upgrade(url)
    return url


async def test_the_grouped_unit_writes_stock_and_fingerprints_and_commit_raises_a_floor_refusal(pg_url: str) -> None:
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        async with factory.group_commit() as uow:  # type: ignore[misc]
            recorded = await uow.stock.put([count("A", "W1", 2)], now=T0)
            assert (recorded.applied, recorded.stale) == (0, 0)  # only known at commit()
            await uow.commit()

        async def store(n: int, qty: int) -> None:
            order = make_order(n)
            async with factory.group_commit() as uow:  # type: ignore[misc]
                assert [lv.available for lv in await uow.stock.levels(["A"])] == [2 - (n > 1)]
                seen = await uow.fingerprints.matches("fp", since=T0, exclude_order_id=order.id)
                assert [m.order_id for m in seen] == [make_order(k).id for k in range(1, n)]
                await uow.payloads.put(order.payload_sha256, b"raw %d" % n)
                await uow.orders.add(order)
                await uow.stock.reserve(order.id, [item("A", qty, floor=0)], at=T0 + MIN)
                await uow.fingerprints.add(
                    "fp",
                    order_id=order.id,
                    platform="taobao",
                    shop_id="demo-taobao",
                    platform_order_id=order.platform_order_id,
                    at=T0,
                )
                await uow.audit.append(
                    actor="t", action="order.accepted", subject_type="order", subject_id=order.id, data={}
                )
                await uow.outbox.add(order_id=order.id, target="u8", kind="deliver", available_at=utcnow())
                await uow.commit()

        await store(1, 1)
        committer = factory.group_committer
        assert committer is not None and committer.grouped_units == 1  # in a group, stock and fingerprint too
        with pytest.raises(Conflict) as refused:
            await store(2, 2)  # 1 left
        assert refused.value.details["reason"] == STOCK_BELOW_FLOOR

        async with factory(write=False) as uow:
            assert await uow.orders.get(make_order(1).id) is not None
            assert await uow.orders.get(make_order(2).id) is None  # nothing of the refused unit
            assert [(lv.pending, lv.available) for lv in await uow.stock.levels(["A"])] == [(1, 1)]
            assert [m.order_id for m in await uow.fingerprints.matches("fp", since=T0, exclude_order_id=None)] == [
                make_order(1).id
            ]
            assert (await uow.audit.verify()).checked == 1
            assert await uow.outbox.pending_count() == 1
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT order_id, qty FROM stock_reservations"))).all()
        assert [tuple(r) for r in rows] == [(make_order(1).id, 1)]
    finally:
        await db.dispose()


async def test_orders_grouped_together_take_the_last_units_one_after_the_other(pg_url: str) -> None:
    """Eight new orders committed at once for 3 free units above a floor of 0: one transaction
    checks them in turn, so 3 are stored, 5 refused with nothing of them written, pending 3."""
    db = create_engine(pg_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        async with factory.group_commit() as uow:  # type: ignore[misc]
            await uow.stock.put([count("A", "W1", 3)], now=T0)
            await uow.commit()

        async def store(n: int) -> str:
            order = make_order(n)
            async with factory.group_commit() as uow:  # type: ignore[misc]
                await uow.payloads.put(order.payload_sha256, b"raw %d" % n)
                await uow.orders.add(order)
                await uow.stock.reserve(order.id, [item("A", 1, floor=0)], at=T0 + MIN)
                await uow.audit.append(
                    actor="t", action="order.accepted", subject_type="order", subject_id=order.id, data={}
                )
                await uow.outbox.add(order_id=order.id, target="u8", kind="deliver", available_at=utcnow())
                await uow.commit()
            return order.id

        results = await asyncio.gather(*(store(n) for n in range(1, 9)), return_exceptions=True)
        stored = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, Conflict)]
        assert (len(stored), len(refused)) == (3, 5)
        assert all(r.details["reason"] == STOCK_BELOW_FLOOR for r in refused)
        committer = factory.group_committer
        assert committer is not None and committer.groups < 8  # grouped, not one transaction each
        async with factory(write=False) as uow:
            assert [(lv.pending, lv.available) for lv in await uow.stock.levels(["A"])] == [(3, 0)]
            assert (await uow.audit.verify()).checked == 3
            assert await uow.outbox.pending_count() == 3
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT order_id FROM stock_reservations ORDER BY order_id"))).all()
            orders = (await conn.execute(text("SELECT id FROM orders ORDER BY id"))).all()
        assert [r[0] for r in rows] == sorted(stored) == [o[0] for o in orders]
    finally:
        await db.dispose()
