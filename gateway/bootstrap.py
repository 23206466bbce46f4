"""The composition root: the one place that chooses adapters and wires them into the core.

``build_container(settings)`` opens the database, compiles the dictionaries and rules, creates
one ERP adapter per configured target and, with no Redis configured, the embedded worker. The
HTTP app, the CLI and (later) the arq worker all start from here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from adapters.db.engine import Database, create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from adapters.u8.eai import U8EaiAdapter
from gateway.auth import KeyCache
from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, TargetConfig, load_config
from gateway.delivery import DeliveryDeps
from gateway.errors import ConfigError
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ports import ErpAdapter, UnitOfWorkFactory
from gateway.runtime import Runtime, load_runtime
from gateway.settings import Settings
from gateway.worker import EmbeddedWorker

log = get_logger("gateway.bootstrap")


@dataclass
class Container:
    settings: Settings
    config: GatewayConfig
    runtime: Runtime
    db: Database
    uow_factory: UnitOfWorkFactory
    metrics: Metrics
    clock: Clock
    keys: KeyCache
    adapters: dict[str, ErpAdapter] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    worker: EmbeddedWorker | None = None

    def delivery_deps(self) -> DeliveryDeps:
        return DeliveryDeps(
            uow_factory=self.uow_factory,
            runtime=self.runtime,
            adapters=self.adapters,
            clock=self.clock,
            metrics=self.metrics,
            rng=random.Random(),
        )

    async def aclose(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        for adapter in self.adapters.values():
            await adapter.aclose()
        if self.http is not None:
            await self.http.aclose()
        await self.db.dispose()


def make_adapter(name: str, target: TargetConfig, http: httpx.AsyncClient) -> ErpAdapter:
    if target.transport == "u8_eai":
        if not target.sender:
            raise ConfigError(f"target {name}: U8 EAI needs `sender`", f"目标 {name}：U8 EAI 需要 sender")
        return U8EaiAdapter(
            url=target.url,
            sender=target.sender,
            client=http,
            timeout=target.timeout_s,
            connect_timeout=target.connect_timeout_s,
        )
    raise ConfigError(f"target {name}: unknown transport {target.transport!r}", f"目标 {name}：未知传输方式")


def prepare_database(settings: Settings) -> None:
    """Apply migrations. ``serve`` does this itself for an embedded SQLite; for PostgreSQL run
    ``gateway db upgrade`` as a deploy step so many replicas never race on a schema change."""
    upgrade(settings.database_url)


async def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    start_worker: bool | None = None,
    migrate: bool | None = None,
) -> Container:
    """Wire everything for one process; ``start_worker=False`` builds an API without delivery."""
    config = load_config(settings.config_path)
    runtime = load_runtime(config)
    if migrate if migrate is not None else settings.is_sqlite:
        prepare_database(settings)
    db = create_engine(settings.database_url, synchronous=settings.sqlite_synchronous)  # type: ignore[arg-type]
    uow_factory = SqlUnitOfWorkFactory(db)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    container = Container(
        settings=settings,
        config=config,
        runtime=runtime,
        db=db,
        uow_factory=uow_factory,
        metrics=Metrics(targets=config.targets),
        clock=clock or SystemClock(),
        keys=KeyCache(),
        http=http,
    )
    container.adapters = {name: make_adapter(name, t, http) for name, t in config.targets.items()}
    run_worker = True if start_worker is None else start_worker
    if start_worker is None and not settings.embedded_queue:
        # This version has no arq workers yet: without the embedded worker nothing would deliver.
        log.warning(
            "GATEWAY_REDIS_URL is set, but this version delivers with the embedded worker only; "
            "every serve process delivers (claims are leased, so they never double-send)"
        )
    if run_worker:
        container.worker = EmbeddedWorker(
            container.delivery_deps(),
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds,
        )
    log.info(
        "gateway wired",
        database=db.dialect,
        targets=sorted(config.targets),
        platforms=sorted(runtime.platform_dictionaries),
        rules_version=runtime.ruleset.version,
        embedded_worker=run_worker,
    )
    return container
