"""The arq worker (``gateway worker``): the delivery job and its process wiring.

``deliver_outbox(ctx, outbox_id)`` claims *that* outbox row with a lease and runs
``gateway.delivery.deliver`` on it — the same function the embedded worker runs. arq may run a
job more than once (a worker killed mid-job, a retry); the job is idempotent because the claim is:
a row already done, not yet due again, or leased by a live worker is left alone and the job
returns ``"noop"``. Shared clients (database, HTTP, ERP adapters, circuits, the Redis limiters)
are built once per process by ``gateway.bootstrap.build_worker_container`` and live in ``ctx``.
Each worker also runs the outbox relay, so rows whose jobs were lost (Redis restarted) or whose
worker died (lease expired) are queued again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from arq.worker import Worker, async_check_health, func
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from adapters.redis.connection import arq_settings
from gateway.bootstrap import Container, build_worker_container
from gateway.delivery import deliver
from gateway.limits import PermitQueue
from gateway.logging import get_logger
from gateway.ports import UnitOfWork, UnitOfWorkFactory
from gateway.settings import Settings

log = get_logger("gateway.jobs")

KEEP_RESULT_S = 60  # arq refuses a job of the same name while its result is kept: see gateway.relay
HEALTH_CHECK_INTERVAL_S = 10
RESTART_PAUSE_S = 1.0  # before a worker that lost Redis starts again


class BoundedUnitsOfWork:
    """A ``UnitOfWorkFactory`` that lets at most ``limit`` of its units of work be open at once;
    the others wait their turn (they are short: one claim, one read, one outcome each)."""

    def __init__(self, factory: UnitOfWorkFactory, limit: int) -> None:
        self.factory = factory
        self.gate = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def __call__(self, *, write: bool = True) -> AsyncIterator[UnitOfWork]:
        async with self.gate, self.factory(write=write) as uow:
            yield uow


async def deliver_outbox(ctx: dict[str, Any], outbox_id: int) -> str:
    """Deliver the outbox row ``outbox_id`` if it is claimable now; return the outcome or ``noop``."""
    c: Container = ctx["container"]
    async with ctx["deps"].uow_factory() as uow:
        lease = await uow.outbox.claim_one(
            outbox_id, owner=ctx["owner"], now=c.clock.now(), lease_seconds=c.settings.lease_seconds
        )
        await uow.commit()
    if lease is None:
        return "noop"
    outcome = await deliver(lease, ctx["deps"])
    if outcome != "delivered" and c.relay is not None:
        c.relay.wake()  # deferred or rescheduled: its next job is the relay's to queue
    return outcome


async def _startup(ctx: dict[str, Any]) -> None:
    container = await build_worker_container(ctx["settings"])
    ctx["container"] = container
    deps = container.delivery_deps()
    pool = getattr(container.db.engine, "pool", None)
    size = pool.size() if pool is not None and hasattr(pool, "size") else 0
    if size > 0:
        # At most as many units of work at once as the engine keeps connections: with max_jobs
        # deliveries running, the rest would open connections beyond the pool that are closed
        # again on return — a new PostgreSQL backend for every few documents.
        deps = replace(deps, uow_factory=BoundedUnitsOfWork(deps.uow_factory, size))
    if deps.limiter is not None:
        # Jobs waiting for a permit queue for it in this process and get a released one at once,
        # instead of each polling Redis and leaving the ERP's slot idle until the next poll.
        deps = replace(deps, limiter=PermitQueue(deps.limiter, wait_s=deps.permit_wait_s))
    ctx["deps"] = deps
    # A newly published dictionary reaches the jobs through their deps (gateway.publication).
    container.runtime_listeners.append(lambda runtime: setattr(deps, "runtime", runtime))
    ctx["owner"] = f"{socket.gethostname()}:{os.getpid()}"
    container.start_delivery()
    if ctx.get("metrics_at") is not None:
        host, port = ctx["metrics_at"]
        ctx["metrics_server"], _ = start_http_server(port, addr=host, registry=container.metrics.registry)
    log.info("arq worker started", owner=ctx["owner"])


async def _shutdown(ctx: dict[str, Any]) -> None:
    # Popped, so that a second call (``run_worker`` after a failed arq close) does nothing twice.
    server = ctx.pop("metrics_server", None)
    if server is not None:
        server.shutdown()
        server.server_close()  # frees the port for a worker started again in this process
    container: Container | None = ctx.pop("container", None)
    if container is not None:
        await container.aclose()


def make_worker(settings: Settings, *, metrics: tuple[str, int] | None = None) -> Worker:
    """An arq ``Worker`` for ``settings`` (which must name ``GATEWAY_REDIS_URL``); with
    ``metrics=(host, port)`` it serves its Prometheus metrics there."""
    assert settings.redis_url  # noqa: S101 - the CLI checks first
    return Worker(
        functions=[
            func(
                deliver_outbox,
                name="deliver_outbox",
                # The lease outlives the job: a job cut off by the timeout is fenced out anyway.
                timeout=settings.lease_seconds,
                keep_result=KEEP_RESULT_S,
                max_tries=3,
            )
        ],
        # The worker's poll loop survives a Redis restart instead of ending the process.
        redis_settings=arq_settings(settings.redis_url, ride_out_restarts=True),
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings, "metrics_at": metrics},
        # Also how long a job that never ran is remembered ("expired": its Redis key was lost, as
        # in a Redis restart; out of tries): arq's own default, an hour, would refuse the relay's
        # re-offer of that attempt, and so stall its outbox row, for as long.
        keep_result=KEEP_RESULT_S,
        max_jobs=settings.worker_concurrency,
        poll_delay=0.1,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        handle_signals=True,
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (it comes with ``uvicorn[standard]``, as for ``serve``):
    every job is a dozen Redis and database round trips, and uvloop's sockets cost a fraction of
    the standard loop's CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(settings: Settings, *, metrics: tuple[str, int] | None = None) -> None:
    """Run an arq worker until SIGINT/SIGTERM.

    arq ends its run on some Redis errors whatever its pool retries: redis-py never retries a
    connection reset while arq WATCHes a job's in-progress key, which is what a Redis restart
    does to a busy worker. Rather than end the process (and deliver nothing until someone
    restarts it), the worker starts afresh on a new event loop; jobs it had in flight are
    abandoned as in a crash, and their leases bring the rows back.
    """
    while True:
        asyncio.set_event_loop(new_event_loop())  # arq's Worker binds to the current loop
        worker = make_worker(settings, metrics=metrics)
        try:
            worker.run()
            return
        except RedisError as exc:
            if worker.main_task is not None and worker.main_task.cancelled():
                raise  # stopping on a signal: Redis failed during the shutdown itself
            log.warning("the worker lost Redis; starting it again", error=type(exc).__name__)
        with contextlib.suppress(Exception):  # arq skips on_shutdown when its own close failed
            worker.loop.run_until_complete(_shutdown(worker.ctx))
        worker.loop.close()
        time.sleep(RESTART_PAUSE_S)


def check_health(settings: Settings) -> int:
    """0 when a worker recorded its health in Redis within the last interval, else 1 (``arq --check``)."""
    assert settings.redis_url  # noqa: S101 - the CLI checks first
    return asyncio.run(async_check_health(arq_settings(settings.redis_url), None, None))
