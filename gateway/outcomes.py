"""What a delivery attempt records: success, a retry, a dead letter, a deferral, a lost lease.

Every write is fenced by the lease token (``Outbox.finish``/``reschedule``/``bury``/``defer``):
when the token moved on — another worker took the row over — nothing is written and the outcome
is ``lease_lost``. Each outcome writes the outbox row, the order, its timeline and the audit log in
one transaction, counts it in the metrics and logs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.erp_edits import EDIT_KINDS, follow_up, refused_hint
from gateway.errors import DeliveryInterrupted, PartnerError, PermanentError, UnknownOutcomeError
from gateway.ids import new_id
from gateway.logging import get_logger
from gateway.ports import DeadLetter, ErpReceipt, OrderRecord, OutboxLease
from gateway.retry import backoff_delay, exhausted

if TYPE_CHECKING:
    from gateway.delivery import DeliveryDeps

log = get_logger("gateway.delivery")


def interrupted(lease: OutboxLease) -> int:
    """Earlier claims of this row that ended without recording anything: their worker died (or
    its lease ran out) during the ERP call.

    Every claim raises the token; every recorded attempt raises ``attempts``, every deferral the
    ``deferrals`` count. A replay starts the count afresh from the token it found
    (``token_base``)."""
    data = lease.state_data
    claims_before = lease.token - 1 - int(data.get("token_base", 0))
    return max(0, claims_before - lease.attempts - int(data.get("deferrals", 0)))


async def defer(lease: OutboxLease, deps: DeliveryDeps, delay_s: float, why: str) -> str:
    """No ERP call was made (circuit open, no permit): back to pending without counting an attempt."""
    now = deps.clock.now()
    async with deps.uow_factory() as uow:
        if not await uow.outbox.defer(lease, now=now, available_at=now + timedelta(seconds=delay_s)):
            return lease_lost(lease, deps)
        await uow.commit()
    if deps.metrics:
        deps.metrics.deliveries_total.labels(lease.target, "deferred").inc()
    log.debug("delivery deferred", order=lease.order_id, target=lease.target, why=why, retry_in_s=round(delay_s, 3))
    return "deferred"


async def record_success(
    lease: OutboxLease,
    deps: DeliveryDeps,
    receipt: ErpReceipt,
    code: str,
    *,
    found_by_lookup: bool,
    accepted_at: datetime | None = None,
    built_from: OrderRecord | None = None,
) -> str:
    """The document is in the ERP. ``built_from``: the order as the document was built from it; a
    newer version stored meanwhile is queued as an edit in the same transaction (``gateway.erp_edits``)."""
    now = deps.clock.now()
    async with deps.uow_factory() as uow:
        if not await uow.outbox.finish(lease, now=now):
            return lease_lost(lease, deps)
        await uow.orders.set_erp(
            lease.order_id, target=lease.target, document_no=receipt.document_no, status="delivered"
        )
        await uow.orders.set_state(lease.order_id, "delivered")
        detail: dict[str, Any] = {
            "target": lease.target,
            "document_no": receipt.document_no,
            "attempt": lease.attempts + 1,
        }
        if receipt.erp_key:
            detail["erp_key"] = receipt.erp_key
        if found_by_lookup:
            detail["found_by_lookup"] = True
        await uow.orders.add_timeline(lease.order_id, "erp.delivered", detail)
        await uow.audit.append(
            actor="gateway",
            action="delivery.succeeded",
            subject_type="order",
            subject_id=lease.order_id,
            data=detail | {"code": code},
        )
        if built_from is not None:
            await follow_up(uow, built_from, now=now)
        await uow.commit()
    if deps.metrics:
        deps.metrics.child(deps.metrics.deliveries_total, lease.target, "delivered").inc()
        if accepted_at is not None:
            lag = (now - accepted_at).total_seconds()
            deps.metrics.child(deps.metrics.delivery_lag_seconds, lease.target).observe(max(0.0, lag))
    log.info("delivered", order=lease.order_id, target=lease.target, document_no=receipt.document_no)
    return "delivered"


async def record_edit(
    lease: OutboxLease, deps: DeliveryDeps, receipt: ErpReceipt, code: str, *, built_from: OrderRecord
) -> str:
    """The ERP confirmed an ``update`` (the document carries the version it was built from) or a
    ``cancel`` (the order is ``cancelled``). After an update, a version stored while it was on its
    way is queued next."""
    now = deps.clock.now()
    outcome = "updated" if lease.kind == "update" else "cancelled"
    async with deps.uow_factory() as uow:
        if not await uow.outbox.finish(lease, now=now):
            return lease_lost(lease, deps)
        await uow.orders.set_erp(
            lease.order_id, target=lease.target, document_no=receipt.document_no or code, status=outcome
        )
        # "delivered" again after an update: a replayed dead letter set the order back to "accepted".
        await uow.orders.set_state(lease.order_id, "delivered" if outcome == "updated" else "cancelled")
        detail: dict[str, Any] = {
            "target": lease.target,
            "document_no": receipt.document_no or code,
            "attempt": lease.attempts + 1,
            "platform_version": built_from.platform_version,
        }
        if receipt.message:
            detail["erp_message"] = receipt.message
        await uow.orders.add_timeline(lease.order_id, f"erp.{outcome}", detail)
        await uow.audit.append(
            actor="gateway",
            action=f"erp.{outcome}",
            subject_type="order",
            subject_id=lease.order_id,
            data=detail | {"code": code},
        )
        if outcome == "updated":
            await follow_up(uow, built_from, now=now)
        await uow.commit()
    if deps.metrics:
        deps.metrics.child(deps.metrics.deliveries_total, lease.target, outcome).inc()
    log.info(f"ERP document {outcome}", order=lease.order_id, target=lease.target, code=code)
    return outcome


def interrupted_error(lease: OutboxLease) -> PartnerError:
    n = interrupted(lease)
    return DeliveryInterrupted(
        f"delivery abandoned: {lease.attempts + n} attempts used up, {n} of them cut off before the "
        "ERP answered (the worker died or its lease ran out); the ERP holds no document for it",
        f"放弃投递：已用尽 {lease.attempts + n} 次尝试，其中 {n} 次在 ERP 应答前中断（工作进程退出或租约到期）；"
        "ERP 中没有该单据",
        hint="Check the workers' logs for crashes or out-of-memory kills, and that GATEWAY_LEASE_SECONDS "
        "exceeds the ERP's slowest answer; then replay the dead letter",
    )


async def retry(lease: OutboxLease, deps: DeliveryDeps, exc: PartnerError, *, code: str) -> str:
    attempts = lease.attempts + interrupted(lease) + 1
    policy = deps.runtime.config.targets[lease.target].retry
    unknown = isinstance(exc, UnknownOutcomeError)
    if exhausted(policy, attempts):
        return await dead_letter(lease, deps, exc, code=code, attempts=attempts)
    delay = policy.unknown_outcome_delay_s if unknown else backoff_delay(policy, attempts, deps.rng)
    now = deps.clock.now()
    outcome = "unknown_outcome" if unknown else "retry"
    async with deps.uow_factory() as uow:
        ok = await uow.outbox.reschedule(
            lease,
            now=now,
            available_at=now + timedelta(seconds=delay),
            error=f"{exc.code}: {exc.message_en}",
            state_data=lease.state_data | {"outcome_unknown": unknown or bool(lease.state_data.get("outcome_unknown"))},
        )
        if not ok:
            return lease_lost(lease, deps)
        detail = {
            "target": lease.target,
            "attempt": attempts,
            "code": code,
            "error": exc.code,
            "message": exc.message_en,
            "retry_in_s": round(delay, 3),
        }
        if lease.kind != "deliver":
            detail["kind"] = lease.kind
        await uow.orders.add_timeline(lease.order_id, f"erp.{outcome}", detail)
        await uow.audit.append(
            actor="gateway", action="delivery.failed", subject_type="order", subject_id=lease.order_id, data=detail
        )
        await uow.commit()
    if deps.metrics:
        deps.metrics.deliveries_total.labels(lease.target, outcome).inc()
        deps.metrics.retries_total.labels(lease.target).inc()
    log.warning(
        "delivery will be retried",
        order=lease.order_id,
        target=lease.target,
        error=exc.code,
        attempt=attempts,
        retry_in_s=round(delay, 3),
    )
    return outcome


async def dead_letter(
    lease: OutboxLease, deps: DeliveryDeps, exc: Exception, *, code: str | None = None, attempts: int | None = None
) -> str:
    now = deps.clock.now()
    attempts = lease.attempts + 1 if attempts is None else attempts
    reason = getattr(exc, "code", "DELIVERY_FAILED")
    message_en = getattr(exc, "message_en", str(exc))
    message_zh = getattr(exc, "message_zh", str(exc))
    partner = getattr(exc, "partner_message", None)
    edit = lease.kind != "deliver"
    hint = getattr(exc, "hint", None) or (
        "The ERP kept failing: check it is reachable and healthy, then replay the dead letter"
        if not isinstance(exc, PermanentError)
        else refused_hint(lease.kind)
        if edit
        else "Correct the cause named in the message, then replay"
    )
    letter = DeadLetter(
        id=new_id(),
        outbox_id=lease.id,
        order_id=lease.order_id,
        target=lease.target,
        reason_code=reason,
        message_en=message_en,
        message_zh=message_zh,
        partner_message=partner,
        hint=hint,
        attempts=attempts,
    )
    async with deps.uow_factory() as uow:
        if not await uow.outbox.bury(lease, now=now, error=f"{reason}: {message_en}"):
            return lease_lost(lease, deps)
        await uow.dead_letters.add(letter)
        if lease.kind in EDIT_KINDS:
            # The document is in the ERP as it was before the edit: the order is delivered (again,
            # when a replay had set it back to accepted), and its ERP status says which edit
            # failed (the dead letter says why).
            await uow.orders.set_state(lease.order_id, "delivered")
            await uow.orders.set_erp(
                lease.order_id, target=lease.target, document_no=None, status=f"{lease.kind}_failed"
            )
        elif not edit:
            await uow.orders.set_state(lease.order_id, "dead")
            await uow.orders.set_erp(lease.order_id, target=lease.target, document_no=None, status="failed")
        detail = {
            "target": lease.target,
            "dead_letter_id": letter.id,
            "reason": reason,
            "message": message_en,
            "erp_message": partner,
            "attempts": attempts,
            "code": code,
        }
        if edit:
            detail["kind"] = lease.kind
        await uow.orders.add_timeline(lease.order_id, "erp.dead_letter", detail)
        await uow.audit.append(
            actor="gateway",
            action="delivery.dead_lettered",
            subject_type="order",
            subject_id=lease.order_id,
            data=detail,
        )
        await uow.commit()
    if deps.metrics:
        deps.metrics.deliveries_total.labels(lease.target, "dead").inc()
        deps.metrics.dead_letters_total.labels(lease.target).inc()
    log.error(
        "delivery failed for good",
        order=lease.order_id,
        target=lease.target,
        reason=reason,
        erp_message=partner,
        dead_letter=letter.id,
    )
    return "dead"


def lease_lost(lease: OutboxLease, deps: DeliveryDeps) -> str:
    if deps.metrics:
        deps.metrics.lease_steals_total.inc()
        deps.metrics.deliveries_total.labels(lease.target, "lease_lost").inc()
    log.warning(
        "lease lost; another worker owns this delivery now", order=lease.order_id, outbox=lease.id, token=lease.token
    )
    return "lease_lost"
