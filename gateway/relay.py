"""The outbox relay: turns due outbox rows into queue jobs (arq on Redis), one per row per attempt.

The database stays the source of truth. The relay reads the rows a claim would take now (pending
and available, or leased with an expired lease: the reaper of dead workers) and enqueues
``deliver_outbox(outbox_id)`` for each, named ``job_id(row)``. The name carries the row's token,
which grows with every claim — so it changes with every attempt *and* every deferral. arq keeps a
finished job's result for ``keep_result`` seconds and refuses a second job of the same name
meanwhile: a bare row id would block the re-enqueue of a retry; ``(id, token)`` does not, and still
stops the same attempt from being queued twice by several relays.

It runs in every ``gateway worker`` and in ``gateway serve`` when Redis is configured: woken
after intake commits, and otherwise every ``idle_poll_s`` or when the next row falls due. A job
it already offered is offered again only after ``reoffer_s`` — so a Redis restart that lost the
queue is healed from the outbox within that time, and a busy backlog is not re-sent every tick.
Wakes that come faster than ``min_interval_s`` (a burst of retries) are served by one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

from gateway.clock import Clock
from gateway.errors import RetryableError
from gateway.logging import get_logger
from gateway.ports import DueRow, JobQueue, UnitOfWorkFactory

log = get_logger("gateway.relay")


def job_id(row: DueRow) -> str:
    """The queue job's name for one attempt at one row."""
    return f"outbox:{row.id}:{row.token}"


class OutboxRelay:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        queue: JobQueue,
        clock: Clock,
        *,
        batch: int = 500,
        idle_poll_s: float = 1.0,
        reoffer_s: float = 10.0,
        min_interval_s: float = 0.1,
        monotonic=time.monotonic,  # noqa: ANN001 - a fake clock in tests
    ) -> None:
        self.uow_factory = uow_factory
        self.queue = queue
        self.clock = clock
        self.batch = batch
        self.idle_poll_s = idle_poll_s
        self.reoffer_s = reoffer_s
        self.min_interval_s = min_interval_s
        self._monotonic = monotonic
        self._offered: dict[str, float] = {}  # job id → when it was last offered
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.enqueued = 0  # jobs the queue accepted, for tests and the curious

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Rows were committed: relay soon instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def relay_once(self) -> int:
        """Offer every due row not offered within ``reoffer_s``; return how many jobs were queued."""
        async with self.uow_factory(write=False) as uow:
            rows = await uow.outbox.due(now=self.clock.now(), limit=self.batch)
        now = self._monotonic()
        self._offered = {k: t for k, t in self._offered.items() if now - t < self.reoffer_s}
        queued = 0
        for row in rows:
            name = job_id(row)
            if name in self._offered:
                continue
            if await self.queue.enqueue_delivery(row.id, job_id=name):
                queued += 1
            self._offered[name] = now  # queued now, or already queued by another relay
        self.enqueued += queued
        return queued

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before reading: a wake from now on is not lost
            started = self._monotonic()
            try:
                await self.relay_once()
                timeout = await self._until_due()
            except RetryableError as exc:  # the queue is away; the outbox keeps the work
                log.warning("relaying outbox rows failed; retrying", error=exc.code)
                timeout = self.idle_poll_s
            except Exception:
                log.exception("relaying outbox rows failed; retrying")
                timeout = self.idle_poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            # Woken early: wakes closer together than min_interval_s make one pass. Every
            # deferred or rescheduled delivery wakes its worker's relay, and each pass reads up to
            # ``batch`` due rows: one pass per wake would cost more than the deliveries.
            rest = self.min_interval_s - (self._monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _until_due(self) -> float:
        """Sleep until the next row falls due (a future one), at most ``idle_poll_s``."""
        async with self.uow_factory(write=False) as uow:
            due = await uow.outbox.next_due_at()
        if due is None:
            return self.idle_poll_s
        wait = (due - self.clock.now()) / timedelta(seconds=1)
        return self.idle_poll_s if wait <= 0 else max(0.01, min(self.idle_poll_s, wait))
