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
import os
import socket
from typing import Any

from arq.worker import Worker, async_check_health, func
from prometheus_client import start_http_server

from adapters.redis.connection import arq_settings
from gateway.bootstrap import Container, build_worker_container
from gateway.delivery import deliver
from gateway.logging import get_logger
from gateway.settings import Settings

log = get_logger("gateway.jobs")

KEEP_RESULT_S = 60  # arq refuses a job of the same name while its result is kept: see gateway.relay
HEALTH_CHECK_INTERVAL_S = 10


async def deliver_outbox(ctx: dict[str, Any], outbox_id: int) -> str:
    """Deliver the outbox row ``outbox_id`` if it is claimable now; return the outcome or ``noop``."""
    c: Container = ctx["container"]
    async with c.uow_factory() as uow:
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
    ctx["deps"] = container.delivery_deps()
    ctx["owner"] = f"{socket.gethostname()}:{os.getpid()}"
    container.start_delivery()
    if ctx.get("metrics_at") is not None:
        host, port = ctx["metrics_at"]
        ctx["metrics_server"], _ = start_http_server(port, addr=host, registry=container.metrics.registry)
    log.info("arq worker started", owner=ctx["owner"])


async def _shutdown(ctx: dict[str, Any]) -> None:
    if ctx.get("metrics_server") is not None:
        ctx["metrics_server"].shutdown()
    container: Container | None = ctx.get("container")
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
        redis_settings=arq_settings(settings.redis_url),
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings, "metrics_at": metrics},
        max_jobs=settings.worker_concurrency,
        poll_delay=0.1,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        handle_signals=True,
    )


def run_worker(settings: Settings, *, metrics: tuple[str, int] | None = None) -> None:
    """Run an arq worker until SIGINT/SIGTERM."""
    asyncio.set_event_loop(asyncio.new_event_loop())  # arq's Worker binds to the current loop
    make_worker(settings, metrics=metrics).run()


def check_health(settings: Settings) -> int:
    """0 when a worker recorded its health in Redis within the last interval, else 1 (``arq --check``)."""
    assert settings.redis_url  # noqa: S101 - the CLI checks first
    return asyncio.run(async_check_health(arq_settings(settings.redis_url), None, None))
