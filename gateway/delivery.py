"""Delivery: one leased outbox row → one ERP document, exactly once.

The same function serves every queue (the embedded worker now, arq workers later): it takes a
lease and its collaborators and returns what happened. Exactly-once rests on three things:

* the document code is derived from the order (``gateway.document``), so a retry repeats it;
* before any attempt whose predecessor's outcome is unknown — a timeout, a dropped reply, or a
  worker that died holding the lease — the ERP is asked whether the document already exists;
* every write about an attempt is fenced by the lease token: a worker whose lease was taken over
  cannot record anything.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.circuit import CallOutcome, CircuitBoard, Pass
from gateway.clock import Clock
from gateway.document import build_document
from gateway.errors import (
    ConfigError,
    DeliveryInterrupted,
    MappingError,
    PartnerError,
    PermanentError,
    UnknownOutcomeError,
)
from gateway.ids import new_id
from gateway.limits import ConcurrencyLimiter, LimitsUnavailableError, Permit, RateLimiter
from gateway.lines import StopLines
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ports import DeadLetter, ErpAdapter, ErpReceipt, OutboxLease, UnitOfWorkFactory
from gateway.retry import backoff_delay, exhausted
from gateway.runtime import Runtime

log = get_logger("gateway.delivery")

LEASE_MARGIN_S = 0.5
"""Time kept back from the lease for recording the result after the ERP call."""


@dataclass
class DeliveryDeps:
    uow_factory: UnitOfWorkFactory
    runtime: Runtime
    adapters: Mapping[str, ErpAdapter]
    clock: Clock
    metrics: Metrics | None = None
    rng: random.Random = field(default_factory=random.Random)
    circuits: CircuitBoard | None = None  # per target; None: no circuit (unit tests of the core)
    limiter: ConcurrencyLimiter | None = None  # per-target concurrency, in-process or through Redis
    rate: RateLimiter | None = None  # per-target starts per second
    permit_wait_s: float = 0.0  # how long to poll for a free permit before deferring the row
    defer_s: float = 0.25  # the base delay of a row deferred for want of a permit (jittered)
    lines: StopLines | None = None  # stop the line: no new work to a stopped target


def interrupted(lease: OutboxLease) -> int:
    """Earlier claims of this row that ended without recording anything: their worker died (or
    its lease ran out) during the ERP call.

    Every claim raises the token; every recorded attempt raises ``attempts``, every deferral the
    ``deferrals`` count. A replay starts the count afresh from the token it found
    (``token_base``)."""
    data = lease.state_data
    claims_before = lease.token - 1 - int(data.get("token_base", 0))
    return max(0, claims_before - lease.attempts - int(data.get("deferrals", 0)))


def _outcome_unknown(lease: OutboxLease) -> bool:
    return bool(lease.state_data.get("outcome_unknown")) or interrupted(lease) > 0


async def deliver(lease: OutboxLease, deps: DeliveryDeps) -> str:
    """Deliver the order behind ``lease``; return the outcome
    (``delivered``, ``retry``, ``unknown_outcome``, ``dead``, ``deferred``, ``skipped``,
    ``lease_lost``). Before the ERP call the target's line must be running (not stopped), its
    circuit must allow it and a concurrency permit must be free; when not, the row is deferred
    without counting an attempt."""
    async with deps.uow_factory(write=False) as uow:
        order = await uow.orders.get(lease.order_id)
    if order is None or order.state in ("delivered", "held", "cancelled"):
        # Nothing to send (already delivered by an earlier lease, or held since): close the row.
        async with deps.uow_factory() as uow:
            ok = await uow.outbox.finish(lease, now=deps.clock.now())
            await uow.commit()
        return "skipped" if ok else "lease_lost"
    target = deps.runtime.config.targets.get(lease.target)
    adapter = deps.adapters.get(lease.target)
    if target is None or adapter is None:
        return await _dead(
            lease,
            deps,
            ConfigError(
                f"target {lease.target!r} is not configured",
                f"ERP 目标 {lease.target!r} 未配置",
                hint="Restore the target in the configuration, then replay the dead letter",
            ),
        )
    try:
        doc = build_document(order, lease.target, target, deps.runtime)
    except (MappingError, ConfigError) as exc:
        hint = exc.hint or "Fix the value table or outbound dictionary named in the message, then replay"
        return await _dead(
            lease,
            deps,
            PermanentError(
                f"cannot build the ERP document: {exc.message_en}",
                f"无法生成 ERP 单据：{exc.message_zh}",
                hint=hint,
            ),
        )
    if deps.lines is not None and deps.lines.is_stopped(lease.target):
        delay = deps.lines.defer_s(lease.target) * (0.75 + 0.5 * deps.rng.random())
        return await _defer(lease, deps, delay, "line_stopped")
    # The permit first, then the circuit: a job may wait for a permit, and the circuit may open
    # meanwhile; asked last, it stops every call that has not started yet.
    try:
        permit, wait = await _take_permit(lease.target, deps)
    except LimitsUnavailableError:
        permit, wait = None, 1.0
    if permit is None:
        return await _defer(lease, deps, wait, "no_permit")
    board = deps.circuits
    ticket: Pass | None = None
    if board is not None:
        refused: tuple[float, str] | None = None
        try:
            ticket = await board.allow(lease.target)
            if not ticket.allowed:
                refused = (max(ticket.retry_after, 0.05), "circuit_open")
        except LimitsUnavailableError:
            refused = (1.0, "circuit_unavailable")
        if refused is not None:
            await _release(deps, permit)
            return await _defer(lease, deps, *refused)
    # The ERP call must end, with an answer or as an unknown outcome, while the lease still holds:
    # a call cut off by the lease's end would record nothing, and one that always takes longer
    # than the lease would be taken over again and again without ever counting as an attempt.
    budget = (lease.lease_expires_at - deps.clock.now()).total_seconds() - LEASE_MARGIN_S
    if budget <= 0:  # the wait for a permit used the lease up: no call, no attempt
        await _report(lease.target, deps, ticket, "cancelled")
        await _release(deps, permit)
        return await _defer(lease, deps, 0.05, "lease_used_up")
    started = time.perf_counter()
    receipt: ErpReceipt | None = None
    looked_up = False
    reported: CallOutcome | None = None
    try:
        async with asyncio.timeout(max(budget, 0.0)):
            if _outcome_unknown(lease):
                looked_up = True
                receipt = await adapter.lookup(doc)
            if receipt is None and exhausted(target.retry, lease.attempts + interrupted(lease)):
                reported = "cancelled"
                await _report(lease.target, deps, ticket, reported)
                return await _dead(
                    lease, deps, _interrupted_error(lease), code=doc.code, attempts=lease.attempts + interrupted(lease)
                )
            if receipt is None:
                receipt = await adapter.submit(doc)
    except TimeoutError:
        reported = "failure"
        await _report(lease.target, deps, ticket, reported)
        return await _retry(lease, deps, _lease_ran_out(budget), code=doc.code)
    except PermanentError as exc:
        # A business rejection proves the ERP is up: a success for the circuit.
        reported = "success"
        await _report(lease.target, deps, ticket, reported)
        return await _dead(lease, deps, exc, code=doc.code)
    except PartnerError as exc:
        reported = "failure"
        await _report(lease.target, deps, ticket, reported)
        return await _retry(lease, deps, exc, code=doc.code)
    finally:
        if reported is None and receipt is None:
            # Cancelled or crashed before an answer: give a half-open probe slot back.
            await _report(lease.target, deps, ticket, "cancelled")
        await _release(deps, permit)
        if deps.metrics:
            deps.metrics.child(deps.metrics.delivery_seconds, lease.target).observe(time.perf_counter() - started)
    await _report(lease.target, deps, ticket, "success")
    return await _record_success(
        lease, deps, receipt, doc.code, found_by_lookup=looked_up, accepted_at=order.created_at
    )


async def _release(deps: DeliveryDeps, permit: Permit) -> None:
    if deps.limiter is not None:
        await deps.limiter.release(permit)


def _lease_ran_out(budget: float) -> UnknownOutcomeError:
    return UnknownOutcomeError(
        f"the ERP did not answer within the {max(budget, 0.0):.1f} s left on the delivery's lease; "
        "it may have stored the document, so it is looked up before the next attempt",
        f"ERP 未在投递租约剩余的 {max(budget, 0.0):.1f} 秒内应答；单据可能已保存，下次尝试前先查询",
        hint="Raise GATEWAY_LEASE_SECONDS above the target's timeout_s + connect_timeout_s",
    )


async def _report(target: str, deps: DeliveryDeps, ticket: Pass | None, outcome: CallOutcome) -> None:
    if ticket is not None and deps.circuits is not None:
        await deps.circuits.record(target, ticket, outcome)


_NO_LIMIT = Permit(target="", id="unlimited", expires_at=float("inf"))


async def _take_permit(target: str, deps: DeliveryDeps) -> tuple[Permit | None, float]:
    """A concurrency permit and a rate token for one ERP call, polling up to ``permit_wait_s``;
    (None, seconds to defer by) when there is none."""
    if deps.limiter is None:
        return _NO_LIMIT, 0.0
    deadline = time.monotonic() + deps.permit_wait_s
    while True:
        permit = await deps.limiter.acquire(target)
        if permit is not None:
            wait = await deps.rate.try_acquire(target) if deps.rate is not None else 0.0
            if wait <= 0:
                return permit, 0.0
            await deps.limiter.release(permit)
        else:
            wait = deps.defer_s * (0.5 + deps.rng.random())
        if time.monotonic() + min(wait, 0.05) > deadline:
            return None, wait
        await asyncio.sleep(min(wait, 0.05))


async def _defer(lease: OutboxLease, deps: DeliveryDeps, delay_s: float, why: str) -> str:
    """No ERP call was made (circuit open, no permit): back to pending without counting an attempt."""
    now = deps.clock.now()
    async with deps.uow_factory() as uow:
        if not await uow.outbox.defer(lease, now=now, available_at=now + timedelta(seconds=delay_s)):
            return _lease_lost(lease, deps)
        await uow.commit()
    if deps.metrics:
        deps.metrics.deliveries_total.labels(lease.target, "deferred").inc()
    log.debug("delivery deferred", order=lease.order_id, target=lease.target, why=why, retry_in_s=round(delay_s, 3))
    return "deferred"


async def _record_success(
    lease: OutboxLease,
    deps: DeliveryDeps,
    receipt: ErpReceipt,
    code: str,
    *,
    found_by_lookup: bool,
    accepted_at: datetime | None = None,
) -> str:
    now = deps.clock.now()
    async with deps.uow_factory() as uow:
        if not await uow.outbox.finish(lease, now=now):
            return _lease_lost(lease, deps)
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
        await uow.commit()
    if deps.metrics:
        deps.metrics.child(deps.metrics.deliveries_total, lease.target, "delivered").inc()
        if accepted_at is not None:
            lag = (now - accepted_at).total_seconds()
            deps.metrics.child(deps.metrics.delivery_lag_seconds, lease.target).observe(max(0.0, lag))
    log.info("delivered", order=lease.order_id, target=lease.target, document_no=receipt.document_no)
    return "delivered"


def _interrupted_error(lease: OutboxLease) -> PartnerError:
    n = interrupted(lease)
    return DeliveryInterrupted(
        f"delivery abandoned: {lease.attempts + n} attempts used up, {n} of them cut off before the "
        "ERP answered (the worker died or its lease ran out); the ERP holds no document for it",
        f"放弃投递：已用尽 {lease.attempts + n} 次尝试，其中 {n} 次在 ERP 应答前中断（工作进程退出或租约到期）；"
        "ERP 中没有该单据",
        hint="Check the workers' logs for crashes or out-of-memory kills, and that GATEWAY_LEASE_SECONDS "
        "exceeds the ERP's slowest answer; then replay the dead letter",
    )


async def _retry(lease: OutboxLease, deps: DeliveryDeps, exc: PartnerError, *, code: str) -> str:
    attempts = lease.attempts + interrupted(lease) + 1
    policy = deps.runtime.config.targets[lease.target].retry
    unknown = isinstance(exc, UnknownOutcomeError)
    if exhausted(policy, attempts):
        return await _dead(lease, deps, exc, code=code, attempts=attempts)
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
            return _lease_lost(lease, deps)
        detail = {
            "target": lease.target,
            "attempt": attempts,
            "code": code,
            "error": exc.code,
            "message": exc.message_en,
            "retry_in_s": round(delay, 3),
        }
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


async def _dead(
    lease: OutboxLease, deps: DeliveryDeps, exc: Exception, *, code: str | None = None, attempts: int | None = None
) -> str:
    now = deps.clock.now()
    attempts = lease.attempts + 1 if attempts is None else attempts
    reason = getattr(exc, "code", "DELIVERY_FAILED")
    message_en = getattr(exc, "message_en", str(exc))
    message_zh = getattr(exc, "message_zh", str(exc))
    partner = getattr(exc, "partner_message", None)
    hint = getattr(exc, "hint", None) or (
        "The ERP kept failing: check it is reachable and healthy, then replay the dead letter"
        if not isinstance(exc, PermanentError)
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
            return _lease_lost(lease, deps)
        await uow.dead_letters.add(letter)
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


def _lease_lost(lease: OutboxLease, deps: DeliveryDeps) -> str:
    if deps.metrics:
        deps.metrics.lease_steals_total.inc()
        deps.metrics.deliveries_total.labels(lease.target, "lease_lost").inc()
    log.warning(
        "lease lost; another worker owns this delivery now", order=lease.order_id, outbox=lease.id, token=lease.token
    )
    return "lease_lost"
