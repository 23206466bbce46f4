"""gateway/stock.py on its own: reservation items combined per SKU and warehouse, the floor check,
the ``POST /v1/stock`` body, and the report service on the fakes (levels and one audit entry in
one unit of work)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import Conflict, PayloadInvalid, PayloadTooLarge
from gateway.ports import Reservation, StockReport
from gateway.stock import (
    MAX_FUTURE,
    STOCK_BELOW_FLOOR,
    check_floors,
    combine,
    decode_stock_body,
    level_body,
    query_skus,
    report_stock,
)
from tests.unit.fakes import FakeUnitOfWorkFactory

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


def test_combine_adds_quantities_and_keeps_the_strictest_floor() -> None:
    got = combine(
        [
            Reservation(sku="A", warehouse="W1", qty=2, floor=1),
            Reservation(sku="A", warehouse="W1", qty=1),
            Reservation(sku="A", warehouse="W1", qty=3, floor=4),
            Reservation(sku="A", warehouse="W2", qty=1),
        ]
    )
    assert got == {
        ("A", "W1"): Reservation(sku="A", warehouse="W1", qty=6, floor=4),
        ("A", "W2"): Reservation(sku="A", warehouse="W2", qty=1, floor=None),
    }
    with pytest.raises(ValueError, match="negative"):
        combine([Reservation(sku="A", warehouse="W1", qty=-1)])


def test_check_floors_refuses_only_counted_items_with_a_floor() -> None:
    wanted = combine(
        [
            Reservation(sku="A", warehouse="W1", qty=3, floor=2),  # 5 - 3 = 2: fine
            Reservation(sku="B", warehouse="W1", qty=9),  # no floor
            Reservation(sku="C", warehouse="W1", qty=9, floor=0),  # no count
        ]
    )
    check_floors("o1", wanted, {("A", "W1"): 5, ("B", "W1"): 0})
    with pytest.raises(Conflict) as refused:
        check_floors("o1", wanted, {("A", "W1"): 4})
    assert refused.value.details == {
        "reason": STOCK_BELOW_FLOOR,
        "shortfalls": [{"sku": "A", "warehouse": "W1", "qty": 3, "available": 4, "floor": 2}],
    }
    assert "o1" in refused.value.message_en and "o1" in refused.value.message_zh


def test_the_body_gets_the_time_received_and_keeps_an_offset() -> None:
    reports = decode_stock_body(
        b'{"items": [{"sku": "A", "warehouse": "W1", "on_hand": 3},'
        b' {"sku": "A", "warehouse": "W2", "on_hand": 0, "reserved": 2, "as_of": "2026-11-27T08:30:00+08:00"}]}',
        max_bytes=1 << 20,
        now=NOW,
    )
    assert reports == [
        StockReport(sku="A", warehouse="W1", on_hand=3, reserved=0, as_of=NOW),
        StockReport(sku="A", warehouse="W2", on_hand=0, reserved=2, as_of=NOW - timedelta(minutes=30)),
    ]
    skewed = (NOW + MAX_FUTURE).isoformat().encode()
    assert decode_stock_body(
        b'{"items": [{"sku": "A", "warehouse": "W1", "on_hand": 3, "as_of": "' + skewed + b'"}]}',
        max_bytes=1 << 20,
        now=NOW,
    )
    with pytest.raises(PayloadTooLarge):
        decode_stock_body(b'{"items": []}', max_bytes=5, now=NOW)
    with pytest.raises(PayloadInvalid) as bad:
        decode_stock_body(b'{"items": [{"sku": "A", "warehouse": "W1", "on_hand": 2e3}]}', max_bytes=99, now=NOW)
    assert bad.value.details["path"] == "items[0].on_hand"


def test_query_skus() -> None:
    assert query_skus(["B", "A", "B", "A,C"]) == ["B", "A", "A,C"]  # a SKU may hold a comma
    for empty in (None, [], [" "]):
        with pytest.raises(PayloadInvalid):
            query_skus(empty)


async def test_report_stock_writes_levels_and_one_audit_entry_together() -> None:
    factory = FakeUnitOfWorkFactory()
    reports = [
        StockReport(sku="A", warehouse="W1", on_hand=5, as_of=NOW - timedelta(hours=1)),
        StockReport(sku="B", warehouse="W1", on_hand=1, as_of=NOW),
    ]
    first = await report_stock(reports, uow_factory=factory, clock=_Clock(), actor="wms-1 (key k1)")
    assert (first.applied, first.stale, first.audit_seq) == (2, 0, 1)
    again = await report_stock(
        [StockReport(sku="A", warehouse="W1", on_hand=9, as_of=NOW - timedelta(hours=2))],
        uow_factory=factory,
        clock=_Clock(),
        actor="erp (key k2)",
    )
    assert (again.applied, again.stale, again.audit_seq) == (0, 1, 2)
    assert factory.commits == 2
    async with factory(write=False) as uow:
        levels = await uow.stock.levels(["A", "B"])
        entries = await uow.audit.list(after_seq=0, limit=10)
    assert [level_body(lv)["available"] for lv in levels] == [5, 1]
    assert [(e.action, e.actor, e.subject_type) for e in entries] == [
        ("stock.reported", "wms-1 (key k1)", "stock"),
        ("stock.reported", "erp (key k2)", "stock"),
    ]
    assert entries[0].data == {
        "items": 2,
        "applied": 2,
        "stale": 0,
        "skus": 2,
        "warehouses": 1,
        "as_of_oldest": (NOW - timedelta(hours=1)).isoformat(),
        "as_of_newest": NOW.isoformat(),
    }
