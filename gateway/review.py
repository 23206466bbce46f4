"""Manual review: people decide what the rules would not let through on their own.

Held orders (a ``hold`` rule, state ``held``) wait in a queue, oldest first. A person with role
``it`` or ``admin`` approves one — it goes on to delivery: an outbox row, as when a newer platform
version releases it — or rejects it: state ``cancelled``, never delivered, whatever versions of
it the platform sends later. Either way with a reason, on the order's timeline and in the audit
log. Of two people deciding at once exactly one wins: the decision is a compare-and-set of the
order's state (``held`` → ``accepted`` | ``cancelled``), and the other gets 409 ``ORDER_NOT_HELD``.

An intercepted order (a ``reject`` rule; 422 at intake, no order stored) goes through only when two
people agree. The first asks to override the intercept (``requested``), a second, different person
confirms with the same call. The raw payload stored at intake is then mapped again with the
dictionary and rules in force now, exactly as intake would; the violations of the rules the
intercept recorded (those the people overrode) are set aside, and the order is stored as intake
stores it: accepted and delivered, or held if another rule holds it. If another rule rejects it
now, or the platform order has a gateway order already (the platform sent a version that passed),
confirmation is refused and nothing changes. The binder's unique key on the platform order makes a
second order impossible, and the confirmation is itself a compare-and-set (``requested`` →
``confirmed``).

"Different person": another API key whose label (the person it was issued to) differs too; two
keys issued to one person do not make four eyes.

Reasons are stored and audited with phone and ID numbers masked (``gateway.pii.scrub_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec

from gateway.auth import Caller
from gateway.clock import Clock
from gateway.errors import Conflict, Forbidden, NotFound, PayloadInvalid
from gateway.intake import IntakeResult, decode_payload, evaluate, store_order, translate
from gateway.order_facts import reserve_approved
from gateway.pii import redact, scrub_text
from gateway.ports import InterceptOverride, InterceptRecord, ReviewItem, UnitOfWork, UnitOfWorkFactory
from gateway.retention import stored_payload
from gateway.runtime import Runtime

MAX_REASON_CHARS = 1000

Decision = Literal["approve", "reject"]
_DECIDED: dict[str, tuple[str, str]] = {"approve": ("approved", "accepted"), "reject": ("rejected", "cancelled")}


class ReasonRequired(PayloadInvalid):
    code = "REASON_REQUIRED"
    message_zh = "请填写理由"
    message_en = "A reason is required"


class OrderNotHeld(Conflict):
    code = "ORDER_NOT_HELD"
    message_zh = "订单不在待审核状态"
    message_en = "The order is not held for review"


class InterceptNotOverridable(Conflict):
    code = "INTERCEPT_NOT_OVERRIDABLE"
    message_zh = "该拦截记录不能放行"
    message_en = "This intercept cannot be overridden"


class InterceptAlreadyOverridden(Conflict):
    code = "INTERCEPT_ALREADY_OVERRIDDEN"
    message_zh = "该拦截记录已放行"
    message_en = "This intercept has been overridden already"


class SecondPersonRequired(Forbidden):
    code = "SECOND_PERSON_REQUIRED"
    message_zh = "须由另一人确认"
    message_en = "Another person must confirm"


class OverrideRefused(Conflict):
    """Confirmation is refused and nothing changes; ``why`` says what stands in the way."""

    code = "OVERRIDE_REFUSED"
    message_zh = "无法放行该拦截记录"
    message_en = "The intercept cannot be overridden"


@dataclass(frozen=True)
class Reviewer:
    """Who decides: the actor audit entries name, and the person behind the key."""

    actor: str
    person: str

    @classmethod
    def of(cls, caller: Caller) -> Reviewer:
        label = (caller.label or "").strip()
        return cls(actor=caller.actor, person=f"label:{label.casefold()}" if label else f"key:{caller.key_id}")


def parse_reason(raw: bytes) -> str:
    """The ``reason`` of a ``{"reason": "..."}`` body, trimmed, phone and ID numbers masked.
    Raises ``ReasonRequired`` when it is missing or blank, ``PayloadInvalid`` otherwise."""
    try:
        body = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError as exc:
        raise PayloadInvalid(
            f'the body is not JSON: {exc}; send {{"reason": "..."}}',
            f'请求不是合法的 JSON：{exc}；请发送 {{"reason": "..."}}',
        ) from None
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired(
            'send {"reason": "..."}: why, in words a colleague and an auditor will understand',
            '请发送 {"reason": "..."}：说明理由，便于同事和审计人员理解',
        )
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise PayloadInvalid(
            f"the reason is {len(reason)} characters; at most {MAX_REASON_CHARS}",
            f"理由共 {len(reason)} 个字符，最多 {MAX_REASON_CHARS} 个",
        )
    return scrub_text(reason)


# ----------------------------------------------------------------------------- the queue


def queue_item(item: ReviewItem, now: datetime) -> dict[str, Any]:
    """One held order as the queue shows it: who and what, why it is held, for how long."""
    order, hold = item.order, item.hold
    canonical = order.canonical
    created = order.created_at or now
    held_at = (hold.created_at if hold is not None else None) or order.updated_at or created
    return {
        "id": order.id,
        "platform": order.platform,
        "shop_id": order.shop_id,
        "order_id": order.platform_order_id,
        "state": order.state,
        "hold_reasons": canonical.get("hold_reasons") or [],
        "rules": hold.rule_codes if hold is not None else [],
        "violations": redact(hold.violations) if hold is not None else [],
        "intercept_id": hold.id if hold is not None else None,
        "paid_fen": (canonical.get("totals") or {}).get("paid_fen"),
        "created_at": created.isoformat(),
        "held_at": held_at.isoformat(),
        "age_seconds": max(0, int((now - created).total_seconds())),
        "mapping_version": order.mapping_version,
        "rules_version": order.rules_version,
    }


# ----------------------------------------------------------------------------- held orders


async def decide(
    order_id: str,
    decision: Decision,
    *,
    reason: str,
    reviewer: Reviewer,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
) -> dict[str, Any]:
    """Approve (on to delivery) or reject (``cancelled``) a held order.

    Raises:
        NotFound: no such order.
        OrderNotHeld: it is not held (decided already, by someone else a moment ago, or never held).
    """
    verb, state = _DECIDED[decision]
    now = clock.now()
    async with uow_factory() as uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}", f"订单 {order_id} 不存在")
        if order.state != "held" or not await uow.orders.set_state_if(order_id, expect="held", state=state):
            current = order.state if order.state != "held" else getattr(await uow.orders.get(order_id), "state", None)
            raise OrderNotHeld(
                f"order {order_id} is {current}, not held: there is nothing to decide",
                f"订单 {order_id} 当前状态为 {current}，不在待审核状态",
                state=current,
            )
        hold = await uow.reviews.latest_hold(order_id)
        rules = hold.rule_codes if hold is not None else []
        if decision == "approve":
            target = order.erp_target or ""
            await uow.outbox.add(order_id=order_id, target=target, kind="deliver", available_at=now)
            await uow.orders.set_erp(order_id, target=target, document_no=None, status="pending")
            await reserve_approved(uow, order_id, order.canonical, now=now)
        detail = {
            "by": reviewer.actor,
            "reason": reason,
            "rules": rules,
            "hold_intercept_id": hold.id if hold is not None else None,
        }
        await uow.orders.add_timeline(order_id, f"review.{verb}", detail)
        await uow.audit.append(
            actor=reviewer.actor,
            action=f"review.{verb}",
            subject_type="order",
            subject_id=order_id,
            data=detail
            | {
                "platform": order.platform,
                "shop_id": order.shop_id,
                "order_id": order.platform_order_id,
                "previous_state": "held",
                "state": state,
            },
        )
        await uow.commit()
    return {
        "id": order_id,
        "platform": order.platform,
        "shop_id": order.shop_id,
        "order_id": order.platform_order_id,
        "decision": verb,
        "state": state,
        "rules": rules,
        "decided_by": reviewer.actor,
        "decided_at": now.isoformat(),
        "reason": reason,
    }


# ----------------------------------------------------------------------------- intercepts


@dataclass(frozen=True)
class OverrideResult:
    status: Literal["requested", "overridden"]
    override: InterceptOverride
    order: IntakeResult | None = None


class _Raced(Exception):
    """Another person's request was stored between our look and our insert."""


async def override_intercept(
    intercept_id: str,
    *,
    reason: str,
    reviewer: Reviewer,
    uow_factory: UnitOfWorkFactory,
    runtime: Runtime,
    clock: Clock,
) -> OverrideResult:
    """Ask to override an intercept, or — a second, different person — confirm the request, which
    stores the order. Of two first requests at once, the later becomes the confirmation (if it
    comes from another person).

    Raises:
        NotFound: no such intercept.
        InterceptNotOverridable: a ``hold`` intercept (its order is decided in the review queue).
        InterceptAlreadyOverridden: confirmed already.
        SecondPersonRequired: the person who asked confirms.
        OverrideRefused: the raw payload is gone, it no longer maps, another rule rejects it now,
            or the platform order has a gateway order already.
    """
    try:
        return await _override_once(
            intercept_id, reason=reason, reviewer=reviewer, uow_factory=uow_factory, runtime=runtime, clock=clock
        )
    except _Raced:
        return await _override_once(
            intercept_id, reason=reason, reviewer=reviewer, uow_factory=uow_factory, runtime=runtime, clock=clock
        )


async def _override_once(
    intercept_id: str,
    *,
    reason: str,
    reviewer: Reviewer,
    uow_factory: UnitOfWorkFactory,
    runtime: Runtime,
    clock: Clock,
) -> OverrideResult:
    now = clock.now()
    async with uow_factory() as uow:
        intercept = await uow.intercepts.get(intercept_id)
        if intercept is None:
            raise NotFound(f"no intercept {intercept_id}", f"拦截记录 {intercept_id} 不存在")
        if intercept.verdict != "reject":
            raise InterceptNotOverridable(
                f"intercept {intercept_id} held order {intercept.order_id}; decide the order in the review queue",
                f"拦截记录 {intercept_id} 为暂扣订单 {intercept.order_id}，请在审核队列中处理",
                hint=f"POST /v1/review/{intercept.order_id}/approve or /reject",
                gateway_order_id=intercept.order_id,
            )
        requested = intercept.override
        if requested is None:
            record = InterceptOverride(
                intercept_id=intercept_id,
                state="requested",
                rules=list(intercept.rule_codes),
                requested_by=reviewer.actor,
                requester=reviewer.person,
                requested_at=now,
                reason=reason,
            )
            try:
                record = await uow.reviews.request_override(record)
            except Conflict:
                raise _Raced() from None
            await uow.audit.append(
                actor=reviewer.actor,
                action="intercept.override_requested",
                subject_type="intercept",
                subject_id=intercept_id,
                data=_intercept_data(intercept) | {"requested_by": reviewer.actor, "reason": reason},
            )
            await uow.commit()
            return OverrideResult("requested", record)
        if requested.state == "confirmed":
            raise InterceptAlreadyOverridden(
                f"intercept {intercept_id} was overridden by {requested.requested_by} and {requested.confirmed_by}",
                f"拦截记录 {intercept_id} 已由 {requested.requested_by} 与 {requested.confirmed_by} 放行",
                gateway_order_id=requested.order_id,
            )
        if requested.requester == reviewer.person or requested.requested_by == reviewer.actor:
            raise SecondPersonRequired(
                f"{requested.requested_by} asked for this override; another person must confirm it",
                f"放行申请由 {requested.requested_by} 提出，须由另一人确认",
                hint=f"Another IT person sends POST /v1/intercepts/{intercept_id}/override with their own key",
                requested_by=requested.requested_by,
            )
        result = await _store_overridden(uow, intercept, requested, runtime, clock, reviewer.actor)
        order_id = result.order_id or ""
        if not await uow.reviews.confirm_override(
            intercept_id, by=reviewer.actor, at=now, reason=reason, order_id=order_id
        ):
            raise InterceptAlreadyOverridden(
                f"intercept {intercept_id} was confirmed by someone else a moment ago",
                f"拦截记录 {intercept_id} 刚刚已由他人确认放行",
            )
        decided = {
            "intercept_id": intercept_id,
            "rules": requested.rules,
            "requested_by": requested.requested_by,
            "request_reason": requested.reason,
            "confirmed_by": reviewer.actor,
            "reason": reason,
        }
        await uow.orders.add_timeline(order_id, "review.overridden", decided)
        await uow.audit.append(
            actor=reviewer.actor,
            action="intercept.overridden",
            subject_type="intercept",
            subject_id=intercept_id,
            data=_intercept_data(intercept)
            | decided
            | {
                "gateway_order_id": order_id,
                "state": result.outcome,
                "mapping_version": runtime.platform_dictionaries[intercept.platform].version,
                "rules_version": runtime.ruleset.version,
            },
        )
        await uow.commit()
    confirmed = msgspec.structs.replace(
        requested,
        state="confirmed",
        confirmed_by=reviewer.actor,
        confirmed_at=now,
        confirm_reason=reason,
        order_id=order_id,
    )
    # Refunds that arrived for this platform order while it was intercepted apply now.
    from gateway.refund_intake import settle_after_intake

    await settle_after_intake(
        uow_factory,
        platform=intercept.platform,
        platform_order_id=intercept.platform_order_id or "",
        order_id=order_id,
        clock=clock,
    )
    return OverrideResult("overridden", confirmed, result)


async def _store_overridden(
    uow: UnitOfWork,
    intercept: InterceptRecord,
    requested: InterceptOverride,
    runtime: Runtime,
    clock: Clock,
    actor: str,
) -> IntakeResult:
    """Map the intercept's raw payload again, set the overridden rules aside, store the order."""
    # Purged under the retention policy: 410 PAYLOAD_PURGED; the platform must send the order again.
    raw = await stored_payload(
        uow, intercept.payload_sha256, of_en=f"intercept {intercept.id}", of_zh=f"拦截记录 {intercept.id} "
    )
    try:
        payload = decode_payload(raw, max_bytes=len(raw) + 1)
        order, unknown = translate(intercept.platform, payload, runtime, shop_header=intercept.shop_id)
    except PayloadInvalid as exc:
        raise OverrideRefused(
            f"the published dictionary no longer reads the order: {exc.message_en}",
            f"当前发布的字典无法读取该订单：{exc.message_zh}",
            why="unmappable",
        ) from None
    source = intercept.snapshot.get("source") or {}
    order = msgspec.structs.replace(
        order,
        source=msgspec.structs.replace(
            order.source,
            raw_sha256=intercept.payload_sha256,
            fetched_at=source.get("fetched_at") or clock.now().isoformat(timespec="seconds"),
        ),
    )
    violations = evaluate(order, runtime)
    kept = [v for v in violations if v.rule not in requested.rules]
    rejecting = [v for v in kept if v.severity == "reject"]
    if rejecting:
        codes = sorted({v.rule for v in rejecting})
        raise OverrideRefused(
            f"the order now also breaks {', '.join(codes)}, which the override does not cover",
            f"订单现在还违反规则 {'、'.join(codes)}，不在本次放行范围内",
            why="still_rejected",
            violations=[msgspec.to_builtins(v) for v in rejecting],
        )
    binding = await uow.orders.find_binding(order.platform, order.shop_id or "", order.order_id)
    if binding is not None:
        raise OverrideRefused(
            f"platform order {order.order_id} is gateway order {binding.order_id} already",
            f"平台订单 {order.order_id} 已是网关订单 {binding.order_id}",
            why="order_exists",
            gateway_order_id=binding.order_id,
        )
    try:
        return await store_order(
            uow, order, kept, sha=intercept.payload_sha256, runtime=runtime, clock=clock, actor=actor, unknown=unknown
        )
    except Conflict:  # the platform's copy was stored beside this transaction (PostgreSQL)
        raise OverrideRefused(
            f"platform order {order.order_id} was stored by the platform a moment ago",
            f"平台订单 {order.order_id} 刚刚已由平台推送入库",
            why="order_exists",
        ) from None


def _intercept_data(intercept: InterceptRecord) -> dict[str, Any]:
    return {
        "platform": intercept.platform,
        "shop_id": intercept.shop_id,
        "order_id": intercept.platform_order_id,
        "rules": intercept.rule_codes,
    }


def override_body(record: InterceptOverride) -> dict[str, Any]:
    body = msgspec.to_builtins(record)
    body.pop("requester", None)
    body.pop("seq", None)
    return body
