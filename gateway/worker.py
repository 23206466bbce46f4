"""The embedded delivery worker: runs inside ``gateway serve`` when no Redis is configured.

It claims due outbox rows with a lease and runs ``gateway.delivery.deliver`` on each, with at most
``concurrency`` documents in flight per ERP target (the legacy ERP's own limit) and
``worker_concurrency`` in the whole process. Claims come in batches: one claim whenever at least
``claim_batch`` slots are free, not one per finished delivery; and when intake wakes an idle worker
it waits ``coalesce_s`` first, so a burst of accepted orders costs one claim, not one per order.
Otherwise it sleeps until the next row is due. A row whose lease expires — the process died
mid-call — is claimed again, and ``deliver`` looks the document up before sending it again.

When the deps carry a concurrency limiter, the limiter bounds the calls at the ERP and the worker
admits two documents per target and ERP slot: while one is at the ERP (or records its outcome),
the next is read, rendered and waiting in a ``PermitQueue`` that hands it the released permit at
once. So the ERP's slots do not sit idle while a finished delivery commits and the next one reads
its order. While every target's line is stopped the worker claims nothing (each claim would only
be deferred again) until a resume wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import replace
from datetime import timedelta

from gateway.delivery import DeliveryDeps, deliver
from gateway.limits import PermitQueue
from gateway.logging import get_logger

log = get_logger("gateway.worker")


class EmbeddedWorker:
    def __init__(
        self,
        deps: DeliveryDeps,
        *,
        concurrency: int,
        lease_seconds: float,
        idle_poll_s: float = 1.0,
        claim_batch: int | None = None,
        coalesce_s: float = 0.005,
        permit_wait_s: float = 2.0,
    ) -> None:
        per_slot = 1  # documents admitted per target for each of its ERP slots
        if deps.limiter is not None:
            wait = max(deps.permit_wait_s, permit_wait_s)
            deps = replace(deps, limiter=PermitQueue(deps.limiter, wait_s=wait), permit_wait_s=wait)
            # One at the ERP and one ready for its permit (or recording its outcome). Not more:
            # a document waiting for a permit is past the stop-the-line check, so after the line
            # stops, the ones already waiting still go out.
            per_slot = 2
        self.deps = deps
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_seconds = lease_seconds
        self.idle_poll_s = idle_poll_s
        self.claim_batch = max(1, min(concurrency, claim_batch or concurrency // 2))
        self.coalesce_s = coalesce_s
        self.claims = 0  # claim queries run, for tests and the curious
        self._free = concurrency
        self._target_limits = {
            name: asyncio.Semaphore(max(1, t.limits.concurrency) * per_slot)
            for name, t in deps.runtime.config.targets.items()
        }
        self._wake = asyncio.Event()  # new rows, or a finished delivery that may unblock its order's next row
        self._room = asyncio.Event()  # a slot came free
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """Something new is in the outbox: look soon instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="embedded-worker")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let in-flight deliveries finish (their leases expire if they cannot)."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        if self._loop_task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for t in pending:
                t.cancel()

    async def _run(self) -> None:
        while True:
            await self._wait_for_room()
            if self._stopping:
                return
            if self._every_line_stopped():
                await self._idle()  # a resume wakes the worker
                continue
            asked = self._free
            try:
                claimed = await self._claim(asked)
            except Exception:  # the database may be briefly unavailable; keep the worker alive
                log.exception("claiming outbox rows failed; retrying")
                claimed = 0
            if claimed < asked:  # everything due is claimed: sleep until more is
                await self._sleep_until_due()

    def _every_line_stopped(self) -> bool:
        lines, targets = self.deps.lines, self.deps.runtime.config.targets
        return lines is not None and bool(targets) and all(lines.is_stopped(name) for name in targets)

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll_s)

    async def _wait_for_room(self) -> None:
        while self._free < self.claim_batch and self._tasks and not self._stopping:
            self._room.clear()
            await self._room.wait()

    async def _claim(self, limit: int) -> int:
        now = self.deps.clock.now()
        self.claims += 1
        async with self.deps.uow_factory() as uow:
            leases = await uow.outbox.claim(owner=self.owner, now=now, lease_seconds=self.lease_seconds, limit=limit)
            await uow.commit()
        for lease in leases:
            self._free -= 1
            task = asyncio.get_running_loop().create_task(self._run_one(lease))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(leases)

    async def _run_one(self, lease) -> None:  # noqa: ANN001 - OutboxLease
        limit = self._target_limits.setdefault(lease.target, asyncio.Semaphore(1))
        try:
            async with limit:
                await deliver(lease, self.deps)
        except Exception:
            # An unexpected error must not kill the worker; the lease expires and the row returns.
            log.exception("delivery crashed", order=lease.order_id, outbox=lease.id)
        finally:
            self._free += 1
            self._room.set()
            self._wake.set()

    async def _sleep_until_due(self) -> None:
        self._wake.clear()  # before reading: a wake from now on is not lost
        timeout = self.idle_poll_s
        try:
            async with self.deps.uow_factory(write=False) as uow:
                due = await uow.outbox.next_due_at()
            if due is not None:
                wait = (due - self.deps.clock.now()) / timedelta(seconds=1)
                timeout = max(0.01, min(timeout, wait))
        except Exception:
            log.exception("reading the next due time failed")
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        except TimeoutError:
            return  # a row is due (or it is time to poll): claim now
        if self.coalesce_s and not self._stopping:
            # Woken by intake: the orders right behind this one commit within milliseconds, and
            # one claim then takes them all.
            await asyncio.sleep(self.coalesce_s)
