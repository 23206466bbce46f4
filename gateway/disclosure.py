"""Showing an order's buyer data in clear, on purpose and on the record.

Everything else masks buyer names, phones and addresses (``gateway.pii``): order reads for anyone
but the WMS and the ERP, intercept snapshots, the audit log, log lines. An auditor or an admin who
must see them (a complaint, a court order) asks for one order at a time; each disclosure writes a
``pii.unmasked`` audit entry naming who, which order and which fields, never the values, and the
values are returned only once that entry is committed.

The clear values are the stored canonical order's: intake stores it as the dictionary mapped it,
so it holds exactly what the platform sent in clear (its masked or encrypted fields stay as they
came, as ``receiver.pii_state`` says). They do not depend on the raw payload, which the retention
policy deletes (``gateway.retention``).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import NotFound
from gateway.ports import UnitOfWorkFactory

# The fields that are masked everywhere else (gateway.pii.mask_order), as canonical paths.
_RECEIVER_PII = ("name", "phone", "detail")
_BUYER_PII = ("nick", "message")


async def unmask_order(uow_factory: UnitOfWorkFactory, order_id: str, *, actor: str, role: str) -> dict[str, Any]:
    """The order's receiver and buyer in clear, after auditing the disclosure.

    Raises:
        NotFound: no such order.
    """
    async with uow_factory() as uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}", f"订单 {order_id} 不存在")
        canonical = order.canonical
        receiver = dict(canonical.get("receiver") or {})
        buyer = dict(canonical.get("buyer") or {})
        fields = [f"receiver.{k}" for k in _RECEIVER_PII if receiver.get(k)]
        fields += [f"buyer.{k}" for k in _BUYER_PII if buyer.get(k)]
        entry = await uow.audit.append(
            actor=actor,
            action="pii.unmasked",
            subject_type="order",
            subject_id=order.id,
            data={
                "role": role,
                "platform": order.platform,
                "shop_id": order.shop_id,
                "order_id": order.platform_order_id,
                "fields": fields,
            },
        )
        await uow.commit()
    return {
        "id": order.id,
        "platform": order.platform,
        "shop_id": order.shop_id,
        "order_id": order.platform_order_id,
        "receiver": receiver,
        "buyer": buyer,
        "pii_state": receiver.get("pii_state"),
        "fields": fields,
        "audit_seq": entry.seq,
    }
