"""Refund intake on the in-memory storage: several orders in one response, refunds that match no
line, refunds waiting for their order, versions, and refunds surviving a new copy of the order."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.errors import UnknownPlatform
from gateway.intake import accept_order
from gateway.ports import OrderRecord
from gateway.refund_intake import RefundsInOrder, accept_refunds, with_stored_refunds
from gateway.refunds import RefundUnmatched
from gateway.runtime import load_runtime
from tests.support.gateway import SAMPLES
from tests.support.refunds import sample_order
from tests.unit.fakes import FakeUnitOfWorkFactory

TB_ORDER = (SAMPLES / "taobao" / "03_partial_refund.json").read_bytes()
TB_REFUND = (SAMPLES / "taobao" / "03_partial_refund.refund_get.json").read_bytes()
JD_REFUND = msgspec.json.decode((SAMPLES / "jd" / "03_partial_refund.refundapply.json").read_bytes())


@pytest.fixture(scope="module")
def runtime():
    return load_runtime(load_config(None, env={}))


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


async def _refund(uow, runtime, platform: str, body: bytes | Any, **kw: Any):
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return await accept_refunds(
        platform, raw, shop_header=None, uow_factory=uow, runtime=runtime, clock=SystemClock(), max_bytes=1 << 20, **kw
    )


async def _order(uow, runtime, body: bytes):
    return await accept_order(
        "taobao", body, shop_header=None, uow_factory=uow, runtime=runtime, clock=SystemClock(), max_bytes=1 << 20
    )


async def _store(uow, platform: str, gateway_id: str) -> OrderRecord:
    order = sample_order(platform)
    async with uow() as u:
        stored = await u.orders.add(
            OrderRecord(
                id=gateway_id,
                platform=platform,
                shop_id=f"demo-{platform}",
                platform_order_id=order.order_id,
                platform_version=order.platform_version,
                state="accepted",
                canonical=msgspec.to_builtins(order),
                mapping_version="m1",
                rules_version="r1",
                payload_sha256="0" * 64,
            )
        )
        await u.commit()
    return stored


def _jd(*records: dict[str, Any]) -> dict[str, Any]:
    page = msgspec.json.decode(msgspec.json.encode(JD_REFUND))
    query = page["jingdong_pop_afs_soa_refundapply_queryPageList_responce"]["queryResult"]
    base = query["result"][0]
    query["result"] = [base | r for r in records] if records else [base]
    return page


async def test_a_jd_page_of_two_orders_applies_one_and_keeps_the_other(uow, runtime) -> None:
    await _store(uow, "jd", "01JD")
    r = await _refund(uow, runtime, "jd", _jd({}, {"id": 7, "orderId": "JD-NOT-YET", "status": 6}))
    assert r.status_code == 202 and r.body["changed"] and r.body["pending"]
    assert r.body["order"] is None and r.body["order_id"] is None  # two orders in one response
    first, second = r.body["refunds"]
    assert (first["order"], first["line_id"], first["needs_review"], first["outcome"]) == (
        "01JD",
        "295600011122:100034567892",
        True,
        "applied",
    )
    assert (second["order"], second["order_id"], second["outcome"], second["state"]) == (
        None,
        "JD-NOT-YET",
        "pending",
        "REFUNDED",
    )
    async with uow(write=False) as u:
        order = await u.orders.get("01JD")
        timeline = await u.orders.timeline("01JD")
        entries = await u.audit.list(after_seq=0, limit=10)
    line_b = order.canonical["lines"][1]["refund"]
    assert line_b["needs_review"] and line_b["amount_fen"] == 3600 and line_b["state"] == "IN_PROGRESS"
    assert order.canonical["totals"]["refunded_fen"] == 0
    assert [t.kind for t in timeline] == ["order.refund"]
    assert [e.action for e in entries] == ["order.refund", "refund.pending"]
    states = {k[1]: (v.state, v.order_id) for k, v in uow.state.refunds.items()}
    assert states == {"880012345": ("applied", "01JD"), "7": ("pending", None)}
    again = await _refund(uow, runtime, "jd", _jd({}, {"id": 7, "orderId": "JD-NOT-YET", "status": 6}))
    assert again.status_code == 200 and not again.body["changed"] and again.body["pending"]
    assert [i["outcome"] for i in again.body["refunds"]] == ["unchanged", "unchanged"]


async def test_a_refund_no_line_matches_is_409_and_stores_nothing(uow, runtime) -> None:
    await _store(uow, "jd", "01JD")
    with pytest.raises(RefundUnmatched) as err:
        await _refund(uow, runtime, "jd", _jd({"applyRefundSum": 1.0}))
    assert err.value.code == "REFUND_UNMATCHED" and err.value.status_code == 409
    assert err.value.details["refund_id"] == "880012345" and "退款" in err.value.message_zh
    assert uow.state.refunds == {} and uow.state.audit == [] and uow.state.payloads == {}


async def test_equal_versions_update_older_ones_are_stale(uow, runtime) -> None:
    await _store(uow, "jd", "01JD")
    assert (await _refund(uow, runtime, "jd", _jd())).status_code == 202
    # JD's version is its check time: a later status under the same check time is taken
    done = await _refund(uow, runtime, "jd", _jd({"status": 6}))
    assert done.status_code == 202 and done.body["refunds"][0]["state"] == "REFUNDED"
    stale = await _refund(uow, runtime, "jd", _jd({"status": 2, "checkTime": "2024-06-15 08:00:00"}))
    assert stale.status_code == 200 and not stale.body["changed"]
    (item,) = stale.body["refunds"]
    assert (item["outcome"], item["state"], item["received_version"]) == (
        "stale",
        "REFUNDED",
        "2024-06-15T08:00:00+08:00",
    )
    async with uow(write=False) as u:
        order = await u.orders.get("01JD")
    assert order.canonical["lines"][1]["refund"]["state"] == "REFUNDED"


async def test_refunds_survive_a_newer_copy_of_the_order(uow, runtime) -> None:
    placed = await _order(uow, runtime, TB_ORDER)
    assert (await _refund(uow, runtime, "taobao", TB_REFUND)).status_code == 202
    payload = msgspec.json.decode(TB_ORDER)
    payload["trade_fullinfo_get_response"]["trade"]["modified"] = "2024-06-20 10:00:00"
    updated = await _order(uow, runtime, msgspec.json.encode(payload))
    assert updated.status_code == 202 and updated.outcome == "updated"
    async with uow(write=False) as u:
        order = await u.orders.get(placed.order_id)
        kinds = [t.kind for t in await u.orders.timeline(placed.order_id)]
    line = order.canonical["lines"][1]["refund"]
    assert (line["state"], line["amount_fen"], line["qty"]) == ("REFUNDED", 6000, 2)
    assert order.canonical["totals"]["refunded_fen"] == 6000
    assert kinds == ["order.accepted", "order.refund", "order.updated", "order.refund"]


async def test_a_waiting_refund_no_line_matches_stays_pending(uow, runtime) -> None:
    refund = msgspec.json.decode(TB_REFUND)
    refund["refund_get_response"]["refund"] |= {
        "refund_id": "99",  # the order's line 2 names 152345678901234567: that one would match
        "oid": 1,
        "outer_id": "NO-SUCH-SKU",
        "refund_fee": "0.01",
    }
    r = await _refund(uow, runtime, "taobao", refund)
    assert r.status_code == 202 and r.body["pending"]
    placed = await _order(uow, runtime, TB_ORDER)
    assert placed.status_code == 202  # the order is taken in all the same
    async with uow(write=False) as u:
        (entry,) = [t for t in await u.orders.timeline(placed.order_id) if t.kind == "order.refund"]
    assert entry.detail["unmatched"] == ["99"] and entry.detail["cause"] == "order"
    assert next(iter(uow.state.refunds.values())).state == "pending"


async def test_with_stored_refunds_for_a_replay(uow, runtime) -> None:
    placed = await _order(uow, runtime, TB_ORDER)
    await _refund(uow, runtime, "taobao", TB_REFUND)
    fresh = msgspec.to_builtins(sample_order("taobao"))
    async with uow() as u:
        stored = await u.orders.get(placed.order_id)
        again = await with_stored_refunds(u, stored, fresh)
    assert again["lines"][1]["refund"]["amount_fen"] == 6000 and fresh["lines"][1]["refund"]["amount_fen"] is None


async def test_douyin_and_unknown_platforms(uow, runtime) -> None:
    with pytest.raises(RefundsInOrder) as err:
        await _refund(uow, runtime, "douyin", b"{}")
    assert err.value.code == "REFUNDS_IN_ORDER" and "/v1/orders/douyin" in err.value.message_en
    assert "after_sale_info" in err.value.message_zh
    with pytest.raises(UnknownPlatform):
        await _refund(uow, runtime, "amazon", b"{}")


async def test_a_pending_refund_of_a_stored_order_is_applied_by_its_repeat(uow, runtime) -> None:
    # as after a crash between intake's transaction and the one applying the waiting refunds
    await _refund(uow, runtime, "jd", _jd())
    await _store(uow, "jd", "01JD")
    r = await _refund(uow, runtime, "jd", _jd())
    assert r.status_code == 202 and r.body["refunds"][0]["outcome"] == "applied" and not r.body["pending"]
    (row,) = uow.state.refunds.values()
    assert (row.state, row.order_id) == ("applied", "01JD")
    assert uow.state.orders["01JD"].canonical["lines"][1]["refund"]["refund_ids"] == ["880012345"]
