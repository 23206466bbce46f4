"""What a judged order writes, in the unit of work intake opened for it (``gateway.intake``):

    accepted: order + binder row + timeline + audit entry + outbox row
    held:     order + binder row + timeline + audit entry + a hold intercept (the review queue's why)
    rejected: intercept + audit entry (422)
    a newer version: the canonical replaced, the state released or held, what changed on the
              timeline and in the audit entry; for an order whose document is in the ERP, an
              outbox row that edits or cancels it, or a record of why the edit is held
              (``gateway.erp_edits``)

``store_order`` serves a caller that judged the order itself (a two-person override).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.clock import Clock
from gateway.erp_edits import IN_ERP_STATES, queue_edit
from gateway.errors import Conflict
from gateway.ids import new_id
from gateway.order_facts import timeline_detail
from gateway.pii import mask_order
from gateway.ports import InterceptRecord, OrderRecord, UnitOfWork
from gateway.rules.catalog import Violation
from gateway.rules.facts import NO_FACTS, Facts
from gateway.runtime import Runtime
from schemas.order import CanonicalOrder


@dataclass(frozen=True)
class IntakeResult:
    status_code: int  # 202 new, 200 repeat, 422 intercepted
    body: dict[str, Any]
    order_id: str | None = None
    outcome: str = "accepted"  # accepted | held | intercepted | duplicate | updated
    rules_seconds: float = 0.0  # spent on the rules: facts read, actions, checks (every pass)
    state: str | None = None  # the stored order's state after this request


def answer(order: OrderRecord, unknown: list[str], warnings: list[Violation] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": order.id,
        "platform": order.platform,
        "order_id": order.platform_order_id,
        "status": "held" if order.state == "held" else "accepted",
        "mapping_version": order.mapping_version,
        "rules_version": order.rules_version,
    }
    if unknown:
        body["unknown_fields"] = unknown
    if warnings:
        body["warnings"] = [msgspec.to_builtins(w) for w in warnings]
    return body


async def intercept(
    uow: UnitOfWork,
    order: CanonicalOrder,
    canonical: dict[str, Any],
    violations: list[Violation],
    sha: str,
    mapping_version: str,
    runtime: Runtime,
    unknown: list[str],
    actor: str,
    *,
    verdict: str = "reject",
    order_id: str | None = None,
) -> IntakeResult:
    intercept_id = new_id()
    shown = [v for v in violations if v.severity == verdict]
    record = InterceptRecord(
        id=intercept_id,
        platform=order.platform,
        shop_id=order.shop_id,
        platform_order_id=order.order_id,
        rule_codes=sorted({v.rule for v in shown}),
        verdict=verdict,  # type: ignore[arg-type]
        violations=[msgspec.to_builtins(v) for v in violations],
        mapping_version=mapping_version,
        rules_version=runtime.ruleset.version,
        payload_sha256=sha,
        snapshot=mask_order(canonical),
        order_id=order_id,
    )
    await uow.intercepts.add(record)
    await uow.audit.append(
        actor=actor,
        action=f"order.{'intercepted' if verdict == 'reject' else 'held'}",
        subject_type="intercept",
        subject_id=intercept_id,
        data={
            "platform": order.platform,
            "shop_id": order.shop_id,
            "order_id": order.order_id,
            "rules": record.rule_codes,
            "rules_version": runtime.ruleset.version,
            "mapping_version": mapping_version,
            "payload_sha256": sha,
            "gateway_order_id": order_id,
        },
    )
    body = {
        "code": "ORDER_INTERCEPTED",
        "message_zh": "订单被业务规则拦截：" + "；".join(v.message_zh for v in shown),
        "message_en": "The order was intercepted by business rules: " + "; ".join(v.message_en for v in shown),
        "intercept_id": intercept_id,
        "violations": [msgspec.to_builtins(v) for v in violations],
    }
    return IntakeResult(422, body, None, "intercepted")


async def store_new(
    uow: UnitOfWork,
    order: CanonicalOrder,
    canonical: dict[str, Any],
    violations: list[Violation],
    verdict: str,
    sha: str,
    mapping_version: str,
    runtime: Runtime,
    clock: Clock,
    unknown: list[str],
    actor: str,
) -> IntakeResult:
    shop = runtime.config.shops[order.shop_id or ""]
    state = "held" if verdict == "hold" else "accepted"
    record = await uow.orders.add(
        OrderRecord(
            id=new_id(),
            platform=order.platform,
            shop_id=order.shop_id or "",
            platform_order_id=order.order_id,
            platform_version=order.platform_version,
            state=state,
            canonical=canonical,
            mapping_version=mapping_version,
            rules_version=runtime.ruleset.version,
            payload_sha256=sha,
            erp_target=shop.target,
            erp_status="pending" if state == "accepted" else None,
        )
    )
    await uow.orders.add_timeline(record.id, f"order.{state}", _timeline_detail(violations, unknown, sha))
    await uow.audit.append(
        actor=actor,
        action=f"order.{state}",
        subject_type="order",
        subject_id=record.id,
        data={
            "platform": order.platform,
            "shop_id": order.shop_id,
            "order_id": order.order_id,
            "platform_version": order.platform_version,
            "payload_sha256": sha,
            "mapping_version": mapping_version,
            "rules_version": runtime.ruleset.version,
            "target": shop.target,
        },
    )
    if state == "accepted":
        await uow.outbox.add(order_id=record.id, target=shop.target, kind="deliver", available_at=clock.now())
    else:
        await intercept(
            uow,
            order,
            canonical,
            violations,
            sha,
            mapping_version,
            runtime,
            unknown,
            actor,
            verdict="hold",
            order_id=record.id,
        )
    warnings = [v for v in violations if v.severity == "warn"]
    return IntakeResult(202, answer(record, unknown, warnings), record.id, state, state=state)


async def store_update(
    uow: UnitOfWork,
    stored: OrderRecord,
    order: CanonicalOrder,
    canonical: dict[str, Any],
    violations: list[Violation],
    verdict: str,
    sha: str,
    runtime: Runtime,
    clock: Clock,
    unknown: list[str],
    actor: str,
    facts: Facts = NO_FACTS,
) -> IntakeResult:
    """A newer platform version of a known order: keep it, and release or hold delivery."""
    await uow.orders.replace_canonical(
        stored.id,
        canonical=canonical,
        platform_version=order.platform_version,
        payload_sha256=sha,
        mapping_version=runtime.platform_dictionaries[stored.platform].version,
        rules_version=runtime.ruleset.version,
    )
    changed = sorted(k for k, v in canonical.items() if stored.canonical.get(k) != v and k != "source")
    new_state = stored.state
    edit: str | None = None
    if stored.state in ("accepted", "held", *IN_ERP_STATES):
        if stored.state in ("accepted", "held"):
            new_state = "held" if verdict == "hold" else "accepted"
        # Compare-and-set, even when the state stays: a person may have decided the held order
        # (gateway.review), or a delivery may have put the order into the ERP, since it was read
        # (on PostgreSQL intake reads outside its write); then intake reads it again.
        if not await uow.orders.set_state_if(
            stored.id,
            expect=stored.state,
            state=new_state,  # type: ignore[arg-type]
        ):
            raise Conflict(f"order {stored.id} changed since it was read", f"订单 {stored.id} 在读取后已被修改")
        if stored.state == "held" and new_state == "accepted":
            await uow.outbox.add(
                order_id=stored.id, target=stored.erp_target or "", kind="deliver", available_at=clock.now()
            )
            await uow.orders.set_erp(stored.id, target=stored.erp_target or "", document_no=None, status="pending")
    if stored.state in IN_ERP_STATES:
        # Its document is in the ERP: an edit or a cancellation of it, or an edit held after
        # shipment (gateway.erp_edits). Not delivered yet: the first delivery sends this version.
        edit = await queue_edit(
            uow,
            msgspec.structs.replace(
                stored,
                canonical=canonical,
                platform_version=order.platform_version,
                payload_sha256=sha,
                mapping_version=runtime.platform_dictionaries[stored.platform].version,
            ),
            stored.canonical,
            canonical,
            now=clock.now(),
            actor=actor,
            rules_version=runtime.ruleset.version,
        )
    detail = (
        _timeline_detail(violations, unknown, sha)
        | {"changed": changed, "platform_version": order.platform_version}
        | timeline_detail(facts)
    )
    if stored.state in IN_ERP_STATES:
        detail["erp_edit"] = edit or "none"
    elif stored.state not in ("accepted", "held"):
        detail["note"] = f"the order is {stored.state}: there is no ERP document to edit"
    if verdict == "hold" and edit != "cancel":
        # Why it is held now, as a held new order records it: what the review queue shows. An
        # order already on its way to the ERP stays so (an edit of its document too); the hold is
        # in the intercept log. A cancelled version of a delivered order cancels its document.
        await intercept(
            uow,
            order,
            canonical,
            violations,
            sha,
            runtime.platform_dictionaries[stored.platform].version,
            runtime,
            unknown,
            actor,
            verdict="hold",
            order_id=stored.id,
        )
    await uow.orders.add_timeline(stored.id, "order.updated", detail)
    await uow.audit.append(
        actor=actor,
        action="order.updated",
        subject_type="order",
        subject_id=stored.id,
        data={
            "changed": changed,
            "platform_version": order.platform_version,
            "payload_sha256": sha,
            "state": new_state,
            "previous_state": stored.state,
        }
        | ({"changes": facts.changes.detail()} if facts.changes is not None else {})
        | ({"erp_edit": edit} if edit is not None else {}),
    )
    stored = msgspec.structs.replace(stored, state=new_state)
    return IntakeResult(202, answer(stored, unknown), stored.id, "updated", state=new_state)


async def store_order(
    uow: UnitOfWork,
    order: CanonicalOrder,
    violations: list[Violation],
    *,
    sha: str,
    runtime: Runtime,
    clock: Clock,
    actor: str,
    unknown: list[str] | None = None,
) -> IntakeResult:
    """Store a new order as intake does (order, binder row, timeline, audit entry, then an outbox
    row, or a hold intercept when a ``hold`` is among ``violations``) for a caller that judged the
    violations itself: a two-person override (``gateway.review``) passes them without the rules it
    overrode. A ``reject`` among them is a programming error. ``Conflict`` when the platform order
    is stored already."""
    if any(v.severity == "reject" for v in violations):
        raise ValueError("store_order stores no order a rule rejects")
    verdict = "hold" if any(v.severity == "hold" for v in violations) else "accept"
    return await store_new(
        uow,
        order,
        msgspec.to_builtins(order),
        violations,
        verdict,
        sha,
        runtime.platform_dictionaries[order.platform].version,
        runtime,
        clock,
        unknown or [],
        actor,
    )


def _timeline_detail(violations: list[Violation], unknown: list[str], sha: str) -> dict[str, Any]:
    detail: dict[str, Any] = {"payload_sha256": sha}
    if violations:
        detail["violations"] = [msgspec.to_builtins(v) for v in violations]
    if unknown:
        detail["unknown_fields"] = unknown
    return detail
