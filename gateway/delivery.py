"""Delivery: one leased outbox row → one ERP document, exactly once.

The same function serves every queue (the embedded worker now, arq workers later): it takes a
lease and its collaborators and returns what happened. Exactly-once rests on three things:

* the document code is derived from the order (``gateway.document``), so a retry repeats it;
* before any attempt whose predecessor's outcome is unknown — a timeout, a dropped reply, or a
  worker that died holding the lease — the ERP is asked whether the document already exists;
* every write about an attempt is fenced by the lease token: a worker whose lease was taken over
  cannot record anything.

A row's ``kind`` says what to do: ``deliver`` sends the document (``adapter.submit``); ``update``
and ``cancel`` edit or cancel the document already there (``adapter.update`` / ``cancel``,
``gateway.erp_edits``), with the same permits, circuit, lease budget and error classification. The
document is always built from the newest stored version of the order.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.circuit import CallOutcome, CircuitBoard, Pass
from gateway.clock import Clock
from gateway.document import build_document
from gateway.erp_edits import EDIT_KINDS, cannot_edit, edit_interrupted_error, send_edit, skip_edit, unknown_kind
from gateway.errors import (
    ConfigError,
    MappingError,
    PartnerError,
    PermanentError,
    UnknownOutcomeError,
)
from gateway.limits import ConcurrencyLimiter, LimitsUnavailableError, Permit, RateLimiter
from gateway.lines import StopLines
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.outcomes import (
    dead_letter,
    defer,
    interrupted,
    interrupted_error,
    record_edit,
    record_success,
    retry,
)
from gateway.ports import ErpAdapter, ErpReceipt, OutboxLease, UnitOfWorkFactory
from gateway.retry import exhausted
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


def _outcome_unknown(lease: OutboxLease) -> bool:
    return bool(lease.state_data.get("outcome_unknown")) or interrupted(lease) > 0


async def deliver(lease: OutboxLease, deps: DeliveryDeps) -> str:
    """Deliver, edit or cancel (``lease.kind``) the order's ERP document; return the outcome
    (``delivered``, ``updated``, ``cancelled``, ``retry``, ``unknown_outcome``, ``dead``,
    ``deferred``, ``skipped``, ``lease_lost``). Before the ERP call the target's line must be
    running (not stopped), its circuit must allow it and a concurrency permit must be free; when
    not, the row is deferred without counting an attempt."""
    async with deps.uow_factory(write=False) as uow:
        order = await uow.orders.get(lease.order_id)
    edit = lease.kind in EDIT_KINDS
    if lease.kind != "deliver" and not edit:
        return await dead_letter(lease, deps, unknown_kind(lease))
    if skip_edit(order) if edit else (order is None or order.state in ("delivered", "held", "cancelled")):
        # Nothing to send (already delivered by an earlier lease, or held since; an edit of an
        # order cancelled since): close the row.
        async with deps.uow_factory() as uow:
            ok = await uow.outbox.finish(lease, now=deps.clock.now())
            await uow.commit()
        return "skipped" if ok else "lease_lost"
    assert order is not None
    target = deps.runtime.config.targets.get(lease.target)
    adapter = deps.adapters.get(lease.target)
    if target is None or adapter is None:
        return await dead_letter(
            lease,
            deps,
            ConfigError(
                f"target {lease.target!r} is not configured",
                f"ERP 目标 {lease.target!r} 未配置",
                hint="Restore the target in the configuration, then replay the dead letter",
            ),
        )
    if edit and not callable(getattr(adapter, lease.kind, None)):
        return await dead_letter(lease, deps, cannot_edit(lease))
    try:
        doc = build_document(order, lease.target, target, deps.runtime)
    except (MappingError, ConfigError) as exc:
        hint = exc.hint or "Fix the value table or outbound dictionary named in the message, then replay"
        return await dead_letter(
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
        return await defer(lease, deps, delay, "line_stopped")
    # The permit first, then the circuit: a job may wait for a permit, and the circuit may open
    # meanwhile; asked last, it stops every call that has not started yet.
    try:
        permit, wait = await _take_permit(lease.target, deps)
    except LimitsUnavailableError:
        permit, wait = None, 1.0
    if permit is None:
        return await defer(lease, deps, wait, "no_permit")
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
            return await defer(lease, deps, *refused)
    # The ERP call must end, with an answer or as an unknown outcome, while the lease still holds:
    # a call cut off by the lease's end would record nothing, and one that always takes longer
    # than the lease would be taken over again and again without ever counting as an attempt.
    budget = (lease.lease_expires_at - deps.clock.now()).total_seconds() - LEASE_MARGIN_S
    if budget <= 0:  # the wait for a permit used the lease up: no call, no attempt
        await _report(lease.target, deps, ticket, "cancelled")
        await _release(deps, permit)
        return await defer(lease, deps, 0.05, "lease_used_up")
    started = time.perf_counter()
    receipt: ErpReceipt | None = None
    looked_up = False
    reported: CallOutcome | None = None
    try:
        async with asyncio.timeout(max(budget, 0.0)):
            # A first delivery whose earlier outcome is unknown looks the document up first (a
            # second ``add`` could make a second document); an edit is sent again (idempotent).
            if not edit and _outcome_unknown(lease):
                looked_up = True
                receipt = await adapter.lookup(doc)
            if receipt is None and exhausted(target.retry, lease.attempts + interrupted(lease)):
                reported = "cancelled"
                await _report(lease.target, deps, ticket, reported)
                cut_off = edit_interrupted_error(lease, interrupted(lease)) if edit else interrupted_error(lease)
                return await dead_letter(
                    lease, deps, cut_off, code=doc.code, attempts=lease.attempts + interrupted(lease)
                )
            if receipt is None:
                receipt = await (send_edit(lease.kind, adapter, doc) if edit else adapter.submit(doc))
    except TimeoutError:
        reported = "failure"
        await _report(lease.target, deps, ticket, reported)
        return await retry(lease, deps, _lease_ran_out(budget), code=doc.code)
    except PermanentError as exc:
        # A business rejection proves the ERP is up: a success for the circuit.
        reported = "success"
        await _report(lease.target, deps, ticket, reported)
        return await dead_letter(lease, deps, exc, code=doc.code)
    except PartnerError as exc:
        reported = "failure"
        await _report(lease.target, deps, ticket, reported)
        return await retry(lease, deps, exc, code=doc.code)
    finally:
        if reported is None and receipt is None:
            # Cancelled or crashed before an answer: give a half-open probe slot back.
            await _report(lease.target, deps, ticket, "cancelled")
        await _release(deps, permit)
        if deps.metrics:
            deps.metrics.child(deps.metrics.delivery_seconds, lease.target).observe(time.perf_counter() - started)
    await _report(lease.target, deps, ticket, "success")
    if edit:
        return await record_edit(lease, deps, receipt, doc.code, built_from=order)
    return await record_success(
        lease, deps, receipt, doc.code, found_by_lookup=looked_up, accepted_at=order.created_at, built_from=order
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
