"""Newer versions of an order already in the ERP (gateway/erp_edits.py) through intake and the
delivery core on the fakes: which version queues an edit, a cancellation or a held edit, what the
ERP is asked, and what the order, its timeline, the audit log and the dead letters say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.delivery import deliver
from gateway.erp_edits import EDIT_HOLD_RULE, plan_edit
from gateway.errors import PermanentError, UnknownOutcomeError
from gateway.intake import accept_order
from gateway.ports import ErpDocument, ErpReceipt
from gateway.replay import replay_dead_letter
from gateway.runtime import load_runtime
from tests.unit.test_delivery_core import FakeErp, _claim, _order, _setup, _timeline

REPO = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json").read_text())
DOC = "GW00000001"


@pytest.fixture
def runtime():
    return load_runtime(load_config(None, env={}))


def version(minute: int, **trade: Any) -> bytes:
    """The sample order as the platform sends it later (``modified`` at 21:<minute>), with ``trade``
    fields of trade_fullinfo_get changed."""
    body = json.loads(json.dumps(SAMPLE))
    t = body["trade_fullinfo_get_response"]["trade"]
    t.update(trade, modified=f"2024-06-19 21:{minute:02d}:00")
    return json.dumps(body, ensure_ascii=False).encode()


MOVED = {"receiver_address": "张衡路***号**幢***室"}
SHIPPED = {"status": "WAIT_BUYER_CONFIRM_GOODS"}  # canonical SHIPPED
CLOSED_BY_TAOBAO = {"status": "TRADE_CLOSED_BY_TAOBAO"}  # canonical CANCELLED


async def _post(runtime, deps, body: bytes):
    result = await accept_order(
        "taobao",
        body,
        shop_header=None,
        uow_factory=deps.uow_factory,
        runtime=runtime,
        clock=deps.clock,
        max_bytes=1 << 20,
    )
    assert result.status_code == 202, result.body
    return result


async def _delivered(runtime, erp: FakeErp):
    uow, clock, deps, gid = await _setup(runtime, erp)
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "delivered"
    return uow, clock, deps, gid


async def _rows(uow) -> list[tuple[str, str]]:
    async with uow(write=False) as u:
        return [(r.kind, r.state) for r in u.outbox._s.outbox.values()]


async def _actions(uow) -> list[str]:
    async with uow(write=False) as u:
        return [e.action for e in await u.audit.list(after_seq=0, limit=100)]


async def test_an_address_change_of_a_delivered_order_edits_its_document(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    result = await _post(runtime, deps, version(10, **MOVED))
    assert result.outcome == "updated" and result.state == "delivered"
    assert await _rows(uow) == [("deliver", "done"), ("update", "pending")]
    (lease,) = await _claim(uow, clock)
    assert lease.kind == "update"
    assert await deliver(lease, deps) == "updated"
    assert erp.calls == ["submit", "update"] and list(erp.documents) == [DOC]  # the same document, edited
    order = await _order(uow, gid)
    assert (order.state, order.erp_document_no, order.erp_status) == ("delivered", DOC, "updated")
    kinds = [t.kind for t in await _timeline(uow, gid)]
    assert kinds[-3:] == ["erp.update_queued", "order.updated", "erp.updated"]
    queued = next(t for t in await _timeline(uow, gid) if t.kind == "erp.update_queued")
    assert queued.detail["changed"] == ["address"] and "张衡路" not in json.dumps(queued.detail, ensure_ascii=False)
    assert (await _actions(uow))[-3:] == ["erp.update_queued", "order.updated", "erp.updated"]
    assert await _rows(uow) == [("deliver", "done"), ("update", "done")]


async def test_an_equal_version_or_a_bare_status_step_queues_nothing(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    await _post(runtime, deps, version(10))  # newer, nothing the document carries changed
    await _post(runtime, deps, version(20, **SHIPPED))  # shipped, nothing else changed: no hold either
    assert await _rows(uow) == [("deliver", "done")]
    updates = [t.detail for t in await _timeline(uow, gid) if t.kind == "order.updated"]
    assert [d["erp_edit"] for d in updates] == ["none", "none"]
    async with uow(write=False) as u:
        assert u.intercepts._s.intercepts == []
    assert erp.calls == ["submit"]


async def test_a_cancelled_version_cancels_the_document_and_the_order(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    result = await _post(runtime, deps, version(10, **CLOSED_BY_TAOBAO))
    assert result.state == "delivered"  # until the ERP confirms
    assert await _rows(uow) == [("deliver", "done"), ("cancel", "pending")]
    async with uow(write=False) as u:
        assert u.intercepts._s.intercepts == []  # NOT_PAID holds a cancelled *new* order; this one is cancelled
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "cancelled"
    assert erp.calls == ["submit", "cancel"] and erp.documents == {}
    order = await _order(uow, gid)
    assert (order.state, order.erp_status) == ("cancelled", "cancelled")
    assert "erp.cancelled" in await _actions(uow)
    # A later version of the cancelled order edits nothing.
    await _post(runtime, deps, version(20, **CLOSED_BY_TAOBAO, **MOVED))
    assert await _rows(uow) == [("deliver", "done"), ("cancel", "done")]


async def test_a_change_after_the_platform_shipped_is_held_with_a_reason(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    await _post(runtime, deps, version(10, **SHIPPED, **MOVED))
    assert await _rows(uow) == [("deliver", "done")]  # no edit sent
    assert (await _order(uow, gid)).state == "delivered"  # the document stays as delivered
    async with uow(write=False) as u:
        ((_, held),) = u.intercepts._s.intercepts
    assert (held.verdict, held.rule_codes, held.order_id) == ("hold", [EDIT_HOLD_RULE], gid)
    (why,) = held.violations
    assert "SHIPPED" in why["message_en"] and "已发货" in why["message_zh"]
    entry = next(t for t in await _timeline(uow, gid) if t.kind == "erp.edit_held")
    assert entry.detail["intercept_id"] == held.id and entry.detail["changed"] == ["address"]
    assert "order.edit_held" in await _actions(uow)
    assert erp.calls == ["submit"]


async def test_an_update_the_erp_refuses_is_dead_lettered_and_can_be_replayed(runtime) -> None:
    refusal = PermanentError("the ERP refused the edit", partner_message="销售订单[GW00000001]已审核，不能修改")
    erp = FakeErp("ok", refusal, refusal)
    uow, clock, deps, gid = await _delivered(runtime, erp)
    await _post(runtime, deps, version(10, **MOVED))
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "dead"
    async with uow(write=False) as u:
        (letter,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
    assert letter.partner_message == "销售订单[GW00000001]已审核，不能修改"
    assert "edit it by hand in the ERP or cancel the shipment" in letter.hint
    order = await _order(uow, gid)  # the document is still in the ERP, as first delivered
    assert (order.state, order.erp_document_no, order.erp_status) == ("delivered", DOC, "update_failed")
    dead = next(t for t in await _timeline(uow, gid) if t.kind == "erp.dead_letter")
    assert dead.detail["kind"] == "update" and dead.detail["erp_message"] == letter.partner_message
    # Replayed too early (still audited): refused again, and the order is still delivered.
    await replay_dead_letter(letter.id, uow_factory=uow, clock=clock, actor="it:test", runtime=runtime)
    assert (await _order(uow, gid)).state == "accepted"  # what a replay says until the row runs
    (again,) = await _claim(uow, clock)
    assert again.kind == "update" and await deliver(again, deps) == "dead"
    assert (await _order(uow, gid)).state == "delivered"
    # Someone un-audits it in the ERP; the replay sends the same edit again.
    async with uow(write=False) as u:
        (second,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
    await replay_dead_letter(second.id, uow_factory=uow, clock=clock, actor="it:test", runtime=runtime)
    (last,) = await _claim(uow, clock)
    assert await deliver(last, deps) == "updated"
    assert erp.calls == ["submit", "update", "update", "update"]
    order = await _order(uow, gid)
    assert (order.state, order.erp_status, order.erp_document_no) == ("delivered", "updated", DOC)


async def test_an_update_with_an_unknown_outcome_is_sent_again_without_a_lookup(runtime) -> None:
    erp = FakeErp("ok", UnknownOutcomeError("reply lost"))
    uow, clock, deps, gid = await _delivered(runtime, erp)
    await _post(runtime, deps, version(10, **MOVED))
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "unknown_outcome"
    clock.advance(runtime.config.targets["u8-demo"].retry.unknown_outcome_delay_s)
    (again,) = await _claim(uow, clock)
    assert await deliver(again, deps) == "updated"
    assert erp.calls == ["submit", "update", "update"]  # an edit is idempotent: no look-up


class MidCallErp(FakeErp):
    """The platform sends a newer version while the first delivery is on its way to the ERP."""

    def __init__(self, during_submit) -> None:  # noqa: ANN001 - an async callable
        super().__init__()
        self.during_submit = during_submit

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        await self.during_submit()
        return await super().submit(doc)


async def test_a_version_stored_during_the_first_delivery_becomes_an_update_behind_it(runtime) -> None:
    """Intake sees the order ``accepted`` (not in the ERP yet) and queues nothing; the delivery was
    built from the version before. Its success finds the newer version and queues the edit."""
    newer = version(10, **MOVED)
    state: dict[str, Any] = {}

    async def arrives():
        state["result"] = await _post(runtime, state["deps"], newer)
        async with state["uow"](write=False) as u:
            state["rows_then"] = [(r.kind, r.state) for r in u.outbox._s.outbox.values()]

    erp = MidCallErp(arrives)
    uow, clock, deps, gid = await _setup(runtime, erp)
    state.update(deps=deps, uow=uow)
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "delivered"
    assert state["result"].state == "accepted" and state["rows_then"] == [("deliver", "leased")]
    assert await _rows(uow) == [("deliver", "done"), ("update", "pending")]
    (edit,) = await _claim(uow, clock)
    assert await deliver(edit, deps) == "updated"
    assert erp.calls == ["submit", "update"]
    updated = [t.detail for t in await _timeline(uow, gid) if t.kind == "erp.updated"]
    assert updated[0]["platform_version"] == "2024-06-19T21:10:00+08:00"


async def test_an_update_row_waits_while_the_delivery_before_it_is_unfinished(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _setup(runtime, erp)
    (first,) = await _claim(uow, clock)  # the first delivery is in flight
    async with uow() as u:
        await u.outbox.add(order_id=gid, target="u8-demo", kind="update", available_at=clock.now())
        await u.commit()
    assert await _claim(uow, clock) == []  # not before the delivery is done
    assert await deliver(first, deps) == "delivered"
    (edit,) = await _claim(uow, clock)
    assert edit.kind == "update" and await deliver(edit, deps) == "updated"
    assert erp.calls == ["submit", "update"]


async def test_an_unknown_row_kind_is_a_dead_letter_not_a_delivery(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    async with uow() as u:
        await u.outbox.add(order_id=gid, target="u8-demo", kind="refund", available_at=clock.now())
        await u.commit()
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "dead"
    assert erp.calls == ["submit"]


class SubmitOnlyErp:
    """A transport that can add documents but not edit them."""

    def __init__(self) -> None:
        self.inner = FakeErp()
        self.submit, self.lookup, self.aclose = self.inner.submit, self.inner.lookup, self.inner.aclose


async def test_a_transport_that_cannot_edit_gives_a_dead_letter_not_a_crash(runtime) -> None:
    erp = SubmitOnlyErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)  # type: ignore[arg-type]
    await _post(runtime, deps, version(10, **MOVED))
    (lease,) = await _claim(uow, clock)
    assert await deliver(lease, deps) == "dead"
    async with uow(write=False) as u:
        (letter,) = (await u.dead_letters.list(cursor=None, limit=10, include_replayed=False)).items
    assert letter.reason_code == "CONFIG_INVALID" and "by hand in the ERP" in letter.hint
    assert (await _order(uow, gid)).state == "delivered" and erp.inner.calls == ["submit"]


# --------------------------------------------------------------------------- plan_edit alone


def _canonical(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "READY_TO_SHIP",
        "receiver": {"province": "上海", "detail": "a"},
        "lines": [{"line_id": "1", "qty": 1}],
        "totals": {"paid_fen": 100, "refunded_fen": 0},
        "seller_memo": None,
    }
    return base | fields


@pytest.mark.parametrize(
    ("new", "plan"),
    [
        (_canonical(), None),
        (_canonical(seller_memo="加急"), "update"),
        (_canonical(lines=[{"line_id": "1", "qty": 2}]), "update"),
        (_canonical(totals={"paid_fen": 100, "refunded_fen": 100}), None),  # a refund: no order edit
        (_canonical(status="CLOSED_REFUNDED"), "cancel"),
        (_canonical(status="CANCELLED", seller_memo="x"), "cancel"),
        (_canonical(status="COMPLETED", receiver={"province": "上海", "detail": "b"}), "hold"),
        (_canonical(status="PARTIALLY_SHIPPED"), None),
    ],
)
def test_plan_edit(new: dict[str, Any], plan: str | None) -> None:
    assert plan_edit(_canonical(), new)[0] == plan


def test_a_second_cancelled_version_plans_nothing() -> None:
    assert plan_edit(_canonical(status="CANCELLED"), _canonical(status="CLOSED_REFUNDED"))[0] is None


def test_closed_after_shipment_is_a_return_held_not_a_cancellation() -> None:
    assert plan_edit(_canonical(status="SHIPPED"), _canonical(status="CLOSED_REFUNDED"))[0] == "hold"


async def test_a_version_closed_after_shipment_holds_with_the_return_reason(runtime) -> None:
    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    await _post(runtime, deps, version(10, **SHIPPED))
    await _post(runtime, deps, version(20, status="TRADE_CLOSED"))  # canonical CLOSED_REFUNDED
    assert await _rows(uow) == [("deliver", "done")]  # no cancellation is sent
    async with uow(write=False) as u:
        ((_, held),) = u.intercepts._s.intercepts
    (why,) = held.violations
    assert "book the return in the ERP" in why["message_en"] and "退货" in why["message_zh"]
    assert (await _order(uow, gid)).state == "delivered" and erp.calls == ["submit"]


async def test_a_change_after_the_erp_recorded_a_shipment_is_held_though_the_platform_is_behind(runtime) -> None:
    """Shipments read back from the ERP (gateway.readback) count as shipped: the platform still says
    the order waits for shipment, but the edit is held with the ERP's shipment as the reason."""
    from datetime import UTC, datetime

    from gateway.ports import ErpShipmentRecord

    erp = FakeErp()
    uow, clock, deps, gid = await _delivered(runtime, erp)
    async with uow() as u:
        record = ErpShipmentRecord(
            target="u8-demo",
            shipment_no="0000000007",
            order_id=gid,
            document_code=DOC,
            event_id=f"erp:u8-demo:0000000007:{DOC}",
            recorded_at=datetime.now(UTC),
        )
        assert await u.erp_shipments.add_if_new(record)
        await u.commit()
    await _post(runtime, deps, version(10, **MOVED))  # the platform has not caught up
    assert await _rows(uow) == [("deliver", "done")]  # no edit sent
    async with uow(write=False) as u:
        ((_, held),) = u.intercepts._s.intercepts
    (why,) = held.violations
    assert held.rule_codes == [EDIT_HOLD_RULE] and "The ERP recorded a shipment" in why["message_en"]
    assert "ERP 已记录该订单发货" in why["message_zh"]
    assert plan_edit({"status": "READY_TO_SHIP"}, {"status": "CANCELLED"}, shipped_in_erp=True)[0] == "hold"
    assert erp.calls == ["submit"]
