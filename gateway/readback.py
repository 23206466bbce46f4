"""Shipment read-back: shipments recorded in the ERP turned into order status events, each once.

Some sites' WMS writes its shipments into the ERP (a U8 发货单, a K3 发货通知 or 销售出库单) and
never calls the gateway. For a target whose configuration enables it (``[targets.X.readback]``),
``poll_target`` selects the target's delivered orders that have no recorded shipment completing
them and whose last change (their delivery, or a later edit) lies within ``lookback_days``, asks the
adapter for their shipments (``ErpAdapter.shipments``) ``batch`` codes at a time, and records each
shipment not seen before in ONE transaction: the ``erp_shipments`` row, the order's ``erp.shipped``
timeline entry and the ``order.shipped_by_erp`` audit entry. The row's key (target, the ERP's
shipment number, our document code: one 发货单 may ship several orders) makes it once: of two
pollers racing, the second one's insert does nothing and it writes nothing else. The row's
``event_id`` (``erp:{target}:{shipment_no}:{document_code}``) is the status event's deterministic
id, for the events subsystem that will publish it (CONTRACT §3, not built here).

What is recorded carries the ERP's shipment number, carrier, waybill and lines (inventory codes and
quantities) — never a buyer's name, phone or address. An adapter's error is logged by code and
class (never a body) and counted in ``readback_errors``; it skips that batch (and ends the target's
round when the ERP is out of reach), never the loop.

``ReadbackScheduler`` runs the rounds periodically: one task per enabled target inside the process
that delivers (the embedded worker of ``gateway serve``, or each ``gateway worker``). With several
workers a ``PollLock`` (a Redis ``SET NX PX``) lets one of them poll a target per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter

from gateway.circuit import CircuitBoard
from gateway.clock import Clock
from gateway.config import TargetConfig
from gateway.document import document_code
from gateway.errors import GatewayError, RetryableError
from gateway.limits import ConcurrencyLimiter, LimitsUnavailableError
from gateway.lines import StopLines
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ports import ErpAdapter, ErpShipment, ErpShipmentRecord, OrderRecord, UnitOfWorkFactory

log = get_logger("gateway.readback")

ACTOR = "gateway"  # the audit log's actor of what the gateway does by itself
TIMELINE_KIND = "erp.shipped"
AUDIT_ACTION = "order.shipped_by_erp"
SINCE_MARGIN = timedelta(days=1)  # ERPs date shipments by their local day: ask from a day before the order

#: (target, orders asked so far, shipments recorded so far) after each batch.
Progress = Callable[[str, int, int], None]


def event_id(target: str, shipment_no: str, document_code: str) -> str:
    """The status event's id of a shipment of one order: the same on every poller and every round."""
    return f"erp:{target}:{shipment_no}:{document_code}"


def ordered_units(order: OrderRecord) -> int:
    """Every unit the order's lines ask for (what the ERP sale order's entries carry)."""
    total = 0
    for line in order.canonical.get("lines") or []:
        qty = line.get("qty") if isinstance(line, dict) else None
        if isinstance(qty, int | float):
            total += int(qty)
    return total


@dataclass
class TargetReport:
    """One round over one target."""

    target: str
    orders: int = 0  # delivered orders asked about
    shipments: int = 0  # shipments the ERP returned for them
    recorded: int = 0  # of which new: each one a timeline entry, an audit entry and a status event
    errors: int = 0  # adapter calls that failed
    error: str | None = None  # the last error's code


@dataclass
class ReadbackReport:
    targets: list[TargetReport] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return sum(t.recorded for t in self.targets)

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.targets)


class ReadbackMetrics:
    """The read-back's counters, registered once in a ``Metrics`` registry."""

    _registered: weakref.WeakKeyDictionary[Metrics, ReadbackMetrics] = weakref.WeakKeyDictionary()

    def __init__(self, metrics: Metrics) -> None:
        common: dict[str, Any] = {"registry": metrics.registry}
        self.polls = Counter("readback_polls", "Shipment read-back rounds, by target.", ["target"], **common)
        self.shipments = Counter(
            "readback_shipments",
            "Shipments read back from the ERP and recorded (each once), by target.",
            ["target"],
            **common,
        )
        self.errors = Counter(
            "readback_errors",
            "Failed shipment read-back calls, by target and error code.",
            ["target", "code"],
            **common,
        )

    @classmethod
    def of(cls, metrics: Metrics) -> ReadbackMetrics:
        found = cls._registered.get(metrics)
        if found is None:
            found = cls._registered[metrics] = cls(metrics)
        return found


async def poll_target(
    name: str,
    target: TargetConfig,
    adapter: ErpAdapter,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
    limiter: ConcurrencyLimiter | None = None,
) -> TargetReport:
    """One round over ``name``: every awaiting order asked about once, new shipments recorded.
    With ``limiter`` each call holds one of the target's concurrency permits, as a delivery does:
    reading back must never put more calls on the legacy ERP than ``[targets.X.limits]`` allows."""
    cfg = target.readback
    counters = ReadbackMetrics.of(metrics) if metrics is not None else None
    report = TargetReport(target=name)
    changed_since = clock.now() - timedelta(days=cfg.lookback_days)
    after_seq = 0
    if counters is not None:
        counters.polls.labels(name).inc()
    while True:
        async with uow_factory(write=False) as uow:
            orders = await uow.erp_shipments.awaiting(
                name, changed_since=changed_since, after_seq=after_seq, limit=cfg.batch
            )
        if not orders:
            break
        after_seq = max(o.seq or 0 for o in orders)
        by_code = {document_code(target.code_prefix, o.seq or 0, target.code_width): o for o in orders}
        since = min((o.created_at or changed_since) for o in orders) - SINCE_MARGIN
        report.orders += len(orders)
        try:
            async with _permit(limiter, name):
                shipments = await adapter.shipments(list(by_code), since=since)
        except Exception as exc:  # noqa: BLE001 - any failure ends this batch, never the loop
            code = exc.code if isinstance(exc, GatewayError) else type(exc).__name__
            report.errors += 1
            report.error = code
            if counters is not None:
                counters.errors.labels(name, code).inc()
            log.warning(
                "reading shipments back failed",
                target=name,
                code=code,
                error=type(exc).__name__,
                documents=len(by_code),
                first_document=next(iter(by_code)),
            )
            if isinstance(exc, RetryableError) or not isinstance(exc, GatewayError):
                break  # the ERP is out of reach: the next round asks again
            continue  # a refused or garbled reply for this batch: the next batch may fare better
        report.shipments += len(shipments)
        report.recorded += await _record_all(name, shipments, by_code, uow_factory, clock)
        if progress is not None:
            progress(name, report.orders, report.recorded)
        if len(orders) < cfg.batch:
            break
    if counters is not None and report.recorded:
        counters.shipments.labels(name).inc(report.recorded)
    if report.recorded or report.errors:
        log.info(
            "shipments read back",
            target=name,
            orders=report.orders,
            shipments=report.shipments,
            recorded=report.recorded,
            errors=report.errors,
        )
    return report


async def _record_all(
    target: str,
    shipments: Sequence[ErpShipment],
    by_code: Mapping[str, OrderRecord],
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
) -> int:
    """Record the new ones among ``shipments``; how many this call recorded."""
    folded = {code.casefold(): order for code, order in by_code.items()}
    mine = [(s, order) for s in shipments if (order := folded.get(s.document_code.casefold())) is not None]
    if not mine:
        return 0
    # Known shipments are skipped on a read, so a round that finds nothing new takes no write lock.
    known: set[tuple[str, str]] = set()
    async with uow_factory(write=False) as uow:
        for order_id in {order.id for _, order in mine}:
            records = await uow.erp_shipments.for_order(order_id)
            known.update((r.shipment_no, r.order_id) for r in records if r.target == target)
    recorded = 0
    for shipment, order in mine:
        if (shipment.shipment_no, order.id) in known:
            continue
        if await record_shipment(target, order, shipment, uow_factory, now=clock.now()):
            recorded += 1
        known.add((shipment.shipment_no, order.id))  # the ERP may list one shipment once per line
    return recorded


async def record_shipment(
    target: str, order: OrderRecord, shipment: ErpShipment, uow_factory: UnitOfWorkFactory, *, now: datetime
) -> bool:
    """Record one shipment with its timeline and audit entries in one transaction; False (and
    nothing written) when it was recorded already, by this poller or another one."""
    lines = [{"item_code": line.item_code, "qty": line.qty, "row": line.row} for line in shipment.lines]
    async with uow_factory() as uow:
        await uow.erp_shipments.lock_order(order.id)  # another poller's shipments of it are counted first
        earlier = [
            r
            for r in await uow.erp_shipments.for_order(order.id)
            if (r.target, r.shipment_no) != (target, shipment.shipment_no)
        ]
        shipped = sum(int(line.get("qty") or 0) for r in earlier for line in r.lines) + sum(
            line.qty for line in shipment.lines
        )
        ordered = ordered_units(order)
        record = ErpShipmentRecord(
            target=target,
            shipment_no=shipment.shipment_no,
            order_id=order.id,
            document_code=shipment.document_code,
            shipped_at=shipment.shipped_at,
            carrier=shipment.carrier,
            waybill_no=shipment.waybill_no,
            lines=lines,
            completes_order=ordered > 0 and shipped >= ordered,
            event_id=event_id(target, shipment.shipment_no, shipment.document_code),
            recorded_at=now,
        )
        if not await uow.erp_shipments.add_if_new(record):
            return False  # leaving without commit: nothing of this attempt stays
        detail = {
            "target": target,
            "document_code": record.document_code,
            "shipment_no": record.shipment_no,
            "event_id": record.event_id,
            "shipped_at": record.shipped_at.isoformat() if record.shipped_at else None,
            "carrier": record.carrier,
            "waybill_no": record.waybill_no,
            "lines": lines,
            "completes_order": record.completes_order,
        }
        await uow.orders.add_timeline(order.id, TIMELINE_KIND, detail)
        await uow.audit.append(actor=ACTOR, action=AUDIT_ACTION, subject_type="order", subject_id=order.id, data=detail)
        await uow.commit()
    log.info(
        "shipment recorded",
        target=target,
        order=order.id,
        document_code=record.document_code,
        shipment_no=record.shipment_no,
        completes_order=record.completes_order,
    )
    return True


async def poll_once(
    targets: Mapping[str, TargetConfig],
    adapters: Mapping[str, ErpAdapter],
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
    limiter: ConcurrencyLimiter | None = None,
) -> ReadbackReport:
    """One round over each of ``targets``, one after another; a target that fails (or whose
    round crashes) is reported and the others still run."""
    report = ReadbackReport()
    for name, target in targets.items():
        try:
            result = await poll_target(
                name, target, adapters[name], uow_factory, clock, metrics=metrics, progress=progress, limiter=limiter
            )
        except Exception:  # the database, say: reported, and the next target still runs
            log.exception("shipment read-back round crashed", target=name)
            result = TargetReport(target=name, errors=1, error="INTERNAL_ERROR")
        report.targets.append(result)
    return report


def enabled_targets(targets: Mapping[str, TargetConfig]) -> dict[str, TargetConfig]:
    return {name: t for name, t in targets.items() if t.readback.enabled}


class PollLock(Protocol):
    async def acquire(self, key: str, ttl_s: float) -> bool:
        """True when this process may poll ``key`` now: nobody else took it within ``ttl_s``."""


class ReadbackScheduler:
    """Polls each enabled target every ``interval_s``, the first time one interval after start
    (``immediately=True``: at start, as ``gateway erp readback`` does).

    With a ``PollLock`` (several workers) a round runs only where the lock was taken, and the
    lock lives for most of an interval, so the workers' rounds of one target do not overlap in the
    normal case; if they ever do, the key of ``erp_shipments`` still records each shipment once.
    """

    def __init__(
        self,
        targets: Mapping[str, TargetConfig],
        adapters: Mapping[str, ErpAdapter],
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        lock: PollLock | None = None,
        immediately: bool = False,
        limiter: ConcurrencyLimiter | None = None,
        lines: StopLines | None = None,
        circuits: CircuitBoard | None = None,
    ) -> None:
        self.immediately = immediately
        self.limiter = limiter
        self.lines = lines  # a stopped line: no read-back calls either
        self.circuits = circuits  # an open (or probing) circuit: the ERP is left alone
        self.targets = enabled_targets(targets)
        self.adapters = adapters
        self.uow_factory = uow_factory
        self.clock = clock
        self.metrics = metrics
        self.lock = lock
        self.rounds: dict[str, int] = dict.fromkeys(self.targets, 0)  # rounds run here, per target
        if metrics is not None:  # the series exist from the start, so an alert on them does too
            counters = ReadbackMetrics.of(metrics)
            for name in self.targets:
                counters.polls.labels(name)
                counters.shipments.labels(name)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _paused(self, name: str) -> bool:
        if self.lines is not None and self.lines.is_stopped(name):
            return True
        if self.circuits is not None:
            return (await self.circuits.read([name])).get(name, "closed") != "closed"
        return False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop(name), name=f"readback:{name}") for name in self.targets]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()  # a round cut off mid-way loses only its uncommitted shipment
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, name: str) -> None:
        interval = self.targets[name].readback.interval_s
        if self.immediately:
            await self.run_round(name, ttl_s=interval * 0.9)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
                return
            await self.run_round(name, ttl_s=interval * 0.9)

    async def run_round(self, name: str, *, ttl_s: float) -> TargetReport | None:
        """One round over ``name`` if the lock allows it; None when another worker holds it, or
        when the target's line is stopped or its circuit is not closed (the ERP is down or being
        probed by deliveries: reading back waits for the next round)."""
        try:
            if await self._paused(name):
                return None
            if self.lock is not None and not await self.lock.acquire(f"readback:{name}", ttl_s):
                return None
            self.rounds[name] += 1
            return await poll_target(
                name,
                self.targets[name],
                self.adapters[name],
                self.uow_factory,
                self.clock,
                metrics=self.metrics,
                limiter=self.limiter,
            )
        except Exception as exc:  # never end the loop: Redis or the database may be back next time
            log.exception("shipment read-back round failed", target=name, error=type(exc).__name__)
            if self.metrics is not None:
                ReadbackMetrics.of(self.metrics).errors.labels(name, type(exc).__name__).inc()
            return None


PERMIT_WAIT_S = 30.0
"""How long a read-back call waits for one of its target's concurrency permits before the round
ends (deliveries keep the ERP busy: the next round asks again)."""


@contextlib.asynccontextmanager
async def _permit(limiter: ConcurrencyLimiter | None, target: str) -> AsyncIterator[None]:
    """Hold one of ``target``'s concurrency permits for the block (none to take without a limiter).

    Raises:
        RetryableError: no permit within ``PERMIT_WAIT_S``, or the shared limits are unreachable.
    """
    if limiter is None:
        yield
        return
    deadline = time.monotonic() + PERMIT_WAIT_S
    try:
        permit = await limiter.acquire(target)
        while permit is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05 + 0.1 * random.random())
            permit = await limiter.acquire(target)
    except LimitsUnavailableError as exc:
        raise RetryableError(
            "the concurrency limits are unreachable", "并发限制存储不可用", hint="Check Redis"
        ) from exc
    if permit is None:
        raise RetryableError(
            f"no free call slot for {target} within {PERMIT_WAIT_S:.0f} s: deliveries use them all",
            f"{PERMIT_WAIT_S:.0f} 秒内 {target} 没有空闲的调用名额：投递占满了",
            hint="The next round asks again; raise [targets.X.limits] concurrency if the ERP can take more",
        )
    try:
        yield
    finally:
        await limiter.release(permit)
