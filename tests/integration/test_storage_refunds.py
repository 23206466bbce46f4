"""The refunds repository on every storage implementation (fakes, SQLite, PostgreSQL): one row per
(platform, refund_id), versions replaced only over the version read, pending until applied."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.errors import Conflict
from gateway.ports import RefundRecord
from tests.support.storage import T0, add_orders, make_order

pytestmark = pytest.mark.integration


def _refund(refund_id: str, *, order: str = "TB00000001", version: str | None = "1", **kw) -> RefundRecord:
    fields = {
        "platform": "taobao",
        "refund_id": refund_id,
        "platform_order_id": order,
        "platform_version": version,
        "state": "pending",
        "canonical": {"refund_id": refund_id, "state": "REFUNDED", "amount_fen": 6000, "reason": "不想要了"},
        "payload_sha256": "c" * 64,
    }
    fields.update(kw)
    return RefundRecord(**fields)


async def test_add_get_for_order_and_the_unique_key(storage):
    async with storage.uow() as uow:
        first = await uow.refunds.add(_refund("R1"))
        await uow.refunds.add(_refund("R2"))
        await uow.refunds.add(_refund("R3", order="TB00000002"))
        await uow.refunds.add(_refund("R1", platform="jd"))  # another platform's R1
        await uow.commit()
    assert isinstance(first.seq, int) and first.created_at is not None
    assert first.created_at.utcoffset() == timedelta(0)
    with pytest.raises(Conflict):
        async with storage.uow() as uow:
            await uow.refunds.add(_refund("R1", version="2"))
            await uow.commit()
    async with storage.uow(write=False) as uow:
        got = await uow.refunds.get("taobao", "R1")
        assert await uow.refunds.get("taobao", "nope") is None
        mine = await uow.refunds.for_order("taobao", "TB00000001")
        assert await uow.refunds.for_order("jd", "TB00000002") == []
    assert got.canonical == first.canonical and got.platform_version == "1" and got.state == "pending"
    assert got.seq == first.seq and got.order_id is None and got.applied_at is None
    assert [r.refund_id for r in mine] == ["R1", "R2"]  # arrival order


async def test_replace_only_over_the_version_read(storage):
    async with storage.uow() as uow:
        await uow.refunds.add(_refund("R1"))
        await uow.refunds.add(_refund("R0", version=None))
        await uow.commit()
    newer = _refund("R1", version="2", canonical={"refund_id": "R1", "state": "CLOSED"}, updated_at=T0)
    async with storage.uow() as uow:
        assert await uow.refunds.replace(newer, expected_version="1")
        assert not await uow.refunds.replace(_refund("R1", version="3"), expected_version="1")  # moved on
        assert await uow.refunds.replace(_refund("R0", version="1"), expected_version=None)
        assert not await uow.refunds.replace(_refund("R9"), expected_version="1")  # no such refund
        await uow.commit()
    async with storage.uow(write=False) as uow:
        got = await uow.refunds.get("taobao", "R1")
        zero = await uow.refunds.get("taobao", "R0")
    assert (got.platform_version, got.canonical, got.updated_at) == ("2", {"refund_id": "R1", "state": "CLOSED"}, T0)
    assert zero.platform_version == "1"


async def test_mark_applied(storage):
    (order,) = await add_orders(storage, make_order(1))
    async with storage.uow() as uow:
        await uow.refunds.add(_refund("R1"))
        await uow.refunds.add(_refund("R2"))
        await uow.commit()
    async with storage.uow() as uow:
        await uow.refunds.mark_applied("taobao", ["R1"], order_id=order.id, now=T0)
        await uow.refunds.mark_applied("taobao", [], order_id=order.id, now=T0)
        await uow.commit()
    async with storage.uow(write=False) as uow:
        r1, r2 = await uow.refunds.for_order("taobao", "TB00000001")
    assert (r1.state, r1.order_id, r1.applied_at) == ("applied", order.id, T0)
    assert (r2.state, r2.order_id) == ("pending", None)
