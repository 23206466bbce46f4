"""Edits of an ERP document already delivered: a newer platform version of an order in the ERP
becomes an edit of the same document (outbox kind ``update``: U8 ``proc="edit"``, K3 ``SO/Update``)
or its cancellation (kind ``cancel``: closed or deleted as the ERP allows); after shipment the edit
is held for a person instead.

What a newer version asks for (``plan_edit``):

* status ``CANCELLED`` / ``CLOSED_REFUNDED`` (and not so before) → ``cancel``; closed after the
  platform said it shipped → ``hold`` (a return to book in the ERP, not a cancellation);
* a change of what the document carries — receiver address or contact, memo or buyer message,
  lines or quantities, amounts (refunds aside: they are credit notes, not order edits) →
  ``update``, unless the platform says the goods left already (``PARTIALLY_SHIPPED``, ``SHIPPED``,
  ``COMPLETED``): then ``hold`` — no edit is sent; the order keeps its document and state, and an
  intercept record with rule ``EDIT_AFTER_SHIPMENT`` (verdict ``hold``), a timeline entry
  ``erp.edit_held`` and an audit entry ``order.edit_held`` say why, in English and Chinese;
* anything else (a status step, a field no document carries) → nothing.

Where it is decided. Intake (``store_update``) for an order whose document is in the ERP (state
``delivered``). An order not delivered yet needs no edit: its first delivery builds the document
from the newest version. But a first delivery already on its way (leased, its document built from
the version before) would miss the newer one; so the delivery's success (``outcomes.record_success``)
compares the version it built from with the one stored now, in the transaction that marks the order
delivered, and queues the edit itself. The same check follows every edit (``record_edit``), which
also covers an edit replayed from a dead letter. Intake compares-and-sets the order's state even
when it does not change it, so on PostgreSQL a delivery that commits between intake's read and its
write makes intake read again (``Conflict``) instead of missing the edit.

Order. The outbox never claims a row while an older row of the same order is unfinished
(``Outbox.claim``): an ``update`` or ``cancel`` queued while the first delivery is pending or leased
waits for it, and edits run in the order their versions arrived.

Unknown outcomes. An edit or a delete is idempotent by nature: the same content under the same
document code, sent twice, leaves the same document; a document already deleted counts as
cancelled (``ErpAdapter.cancel``). So an edit whose outcome is unknown is simply sent again (after
the target's ``unknown_outcome_delay_s``) — there is no look-up first, unlike a first delivery,
where a second ``add`` could create a second document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from gateway.errors import ConfigError, DeliveryInterrupted, PartnerError
from gateway.ids import new_id
from gateway.pii import mask_order
from gateway.ports import ErpAdapter, ErpDocument, ErpReceipt, InterceptRecord, OrderRecord, OutboxLease, UnitOfWork
from gateway.rules.catalog import Violation
from gateway.versions import OrderChanges, diff_orders

CANCEL_STATUSES = ("CANCELLED", "CLOSED_REFUNDED")
SHIPPED_STATUSES = ("PARTIALLY_SHIPPED", "SHIPPED", "COMPLETED")
EDIT_HOLD_RULE = "EDIT_AFTER_SHIPMENT"
EDIT_KINDS = ("update", "cancel")
IN_ERP_STATES = ("delivered", "delivering")
"""Order states whose document is in the ERP: a newer version edits it."""

EditPlan = Literal["update", "cancel", "hold"]

_AMOUNTS_NOT_EDITED = {"refunded_fen"}  # refunds after delivery are credit notes, not order edits


def document_changes(changes: OrderChanges) -> list[str]:
    """The groups of what an ERP sale order carries that ``changes`` touch (names, no values)."""
    out = []
    if changes.address:
        out.append("address")
    if changes.contact:
        out.append("contact")
    if changes.memo:
        out.append("memo")
    if changes.lines_added or changes.lines_removed or changes.qty:
        out.append("lines")
    if set(changes.amounts) - _AMOUNTS_NOT_EDITED:
        out.append("amounts")
    return out


def plan_edit(
    old: dict[str, Any], new: dict[str, Any], *, shipped_in_erp: bool = False
) -> tuple[EditPlan | None, OrderChanges]:
    """What a newer canonical version ``new`` of an order whose document is in the ERP asks for.
    ``shipped_in_erp``: the ERP recorded a shipment of it (read back, ``gateway.readback``), which
    holds an edit or a cancellation as the platform's own shipped status does."""
    changes = diff_orders(old, new)
    status = new.get("status")
    if status in CANCEL_STATUSES:
        if old.get("status") in CANCEL_STATUSES:
            return None, changes  # cancelled already: its cancel is queued or done
        # Closed after the goods left: a return to book in the ERP, not a cancellation.
        return ("hold" if shipped_in_erp or old.get("status") in SHIPPED_STATUSES else "cancel"), changes
    if not document_changes(changes):
        return None, changes
    return ("hold" if shipped_in_erp or status in SHIPPED_STATUSES else "update"), changes


def _held_violation(status: str, *, shipped_in_erp: bool = False) -> Violation:
    who_en = "The ERP recorded a shipment of the order" if shipped_in_erp else "The platform says the order has shipped"
    who_zh = "ERP 已记录该订单发货" if shipped_in_erp else "平台显示订单已发货"
    if status in CANCEL_STATUSES:
        return Violation(
            rule=EDIT_HOLD_RULE,
            severity="hold",
            message_en=(
                f"The platform closed the order ({status}) after it shipped: the ERP document is not cancelled; "
                "book the return in the ERP"
            ),
            message_zh=f"订单发货后被平台关闭（{status}）：ERP 单据不作废；请在 ERP 中办理退货",
            path="status",
        )
    return Violation(
        rule=EDIT_HOLD_RULE,
        severity="hold",
        message_en=(
            f"{who_en} ({status}): the change is not sent to the ERP document; "
            "agree it with the warehouse and edit the ERP document by hand if it still applies"
        ),
        message_zh=f"{who_zh}（{status}）：本次修改未同步到 ERP 单据；请与仓库确认，如仍需修改请在 ERP 中手工修改",
        path="status",
    )


async def queue_edit(
    uow: UnitOfWork,
    order: OrderRecord,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    now: datetime,
    actor: str,
    rules_version: str | None = None,
) -> EditPlan | None:
    """Queue the edit a newer version ``new`` of ``order`` (document in the ERP, built from ``old``)
    asks for, or record why it is held; return what was done. Writes in ``uow``; no commit."""
    shipped_in_erp = bool(await uow.erp_shipments.for_order(order.id))
    plan, changes = plan_edit(old, new, shipped_in_erp=shipped_in_erp)
    if plan is None:
        return None
    target = order.erp_target or ""
    detail: dict[str, Any] = {"target": target, "changed": document_changes(changes)} | {
        "changes": changes.detail(),
        "platform_version": order.platform_version,
    }
    if plan in EDIT_KINDS:
        outbox_id = await uow.outbox.add(order_id=order.id, target=target, kind=plan, available_at=now)
        if outbox_id:  # a grouped PostgreSQL unit learns the id only when it commits
            detail["outbox_id"] = outbox_id
        await uow.orders.add_timeline(order.id, f"erp.{plan}_queued", detail)
        await uow.audit.append(
            actor=actor, action=f"erp.{plan}_queued", subject_type="order", subject_id=order.id, data=detail
        )
        return plan
    violation = _held_violation(str(new.get("status")), shipped_in_erp=shipped_in_erp)
    record = InterceptRecord(
        id=new_id(),
        platform=order.platform,
        shop_id=order.shop_id,
        platform_order_id=order.platform_order_id,
        rule_codes=[EDIT_HOLD_RULE],
        verdict="hold",
        violations=[msgspec.to_builtins(violation)],
        mapping_version=order.mapping_version,
        rules_version=rules_version or order.rules_version,
        payload_sha256=order.payload_sha256,
        snapshot=mask_order(new),
        order_id=order.id,
    )
    await uow.intercepts.add(record)
    detail |= {"intercept_id": record.id, "rule": EDIT_HOLD_RULE, "message": violation.message_en}
    await uow.orders.add_timeline(order.id, "erp.edit_held", detail | {"message_zh": violation.message_zh})
    await uow.audit.append(
        actor=actor, action="order.edit_held", subject_type="order", subject_id=order.id, data=detail
    )
    return plan


async def send_edit(kind: str, adapter: ErpAdapter, doc: ErpDocument) -> ErpReceipt:
    """The ERP call of an ``update`` or ``cancel`` row."""
    if kind == "update":
        return await adapter.update(doc)
    if kind == "cancel":
        return await adapter.cancel(doc)
    raise ValueError(f"not an edit: {kind!r}")


def skip_edit(order: OrderRecord | None) -> bool:
    """An edit with nothing left to do: the order is gone or cancelled already (by an earlier
    cancel, or a person rejected it)."""
    return order is None or order.state == "cancelled"


def edit_interrupted_error(lease: OutboxLease, interrupted: int) -> PartnerError:
    """Every attempt of an edit used up, ``interrupted`` of them cut off before the ERP answered."""
    total = lease.attempts + interrupted
    return DeliveryInterrupted(
        f"ERP {lease.kind} abandoned: {total} attempts used up, {interrupted} of them cut off before the "
        "ERP answered (the worker died or its lease ran out); the ERP document may or may not carry it",
        f"放弃 ERP {'修改' if lease.kind == 'update' else '取消'}：已用尽 {total} 次尝试，其中 {interrupted} 次在 "
        "ERP 应答前中断（工作进程退出或租约到期）；ERP 单据可能未更新",
        hint="Check the workers' logs and that GATEWAY_LEASE_SECONDS exceeds the ERP's slowest answer; "
        "then replay the dead letter (an edit is safe to send again)",
    )


def unknown_kind(lease: OutboxLease) -> ConfigError:
    """A row of a kind this gateway does not know (queued by a newer version): not sent anywhere."""
    return ConfigError(
        f"outbox row {lease.id} has an unknown kind {lease.kind!r}",
        f"发件箱记录 {lease.id} 的类型 {lease.kind!r} 未知",
        hint="A newer gateway version queued it: run that version's workers, then replay the dead letter",
    )


def cannot_edit(lease: OutboxLease) -> ConfigError:
    """The target's transport has no ``update`` / ``cancel``: nothing is sent, a person acts."""
    what_zh = "修改" if lease.kind == "update" else "取消"
    return ConfigError(
        f"the transport of target {lease.target!r} cannot {lease.kind} a document already in the ERP",
        f"ERP 目标 {lease.target!r} 的接口不支持{what_zh}已下发的单据",
        hint="Make the change by hand in the ERP (the order's timeline names what changed), or configure a "
        "transport that can, then replay the dead letter",
    )


def refused_hint(kind: str) -> str:
    """The operator's next step when the ERP refuses an edit and the adapter gave no hint."""
    if kind == "cancel":
        return (
            "The ERP refused to close or delete the document (shipped or audited?): cancel the shipment or "
            "close the document by hand in the ERP, then replay the dead letter"
        )
    return (
        "The ERP refused to edit the document (shipped or audited?): edit it by hand in the ERP or cancel "
        "the shipment, then replay the dead letter"
    )


async def follow_up(uow: UnitOfWork, built_from: OrderRecord, *, now: datetime) -> EditPlan | None:
    """After a delivery or an edit: a newer version stored while it was on its way (its document was
    built from ``built_from``) becomes the edit it asks for, queued behind it."""
    # The binder row first (a few columns, no canonical to decode): every delivery asks, and a
    # newer version changes its payload hash. Read after the caller's write of the order row, it
    # sees an intake that held that row (PostgreSQL) as committed.
    binding = await uow.orders.find_binding(built_from.platform, built_from.shop_id, built_from.platform_order_id)
    if binding is None or binding.payload_sha256 == built_from.payload_sha256:
        return None
    current = await uow.orders.get(built_from.id)
    if current is None or current.canonical == built_from.canonical:
        return None
    return await queue_edit(uow, current, built_from.canonical, current.canonical, now=now, actor="gateway")
