"""The composition root: the one place that chooses adapters and wires them into the core.

``build_container(settings)`` opens the database, brings the bundled dictionaries into it
(``gateway.governance.seed``), compiles the published ones and the rules, creates one ERP adapter
per configured target, the circuits and concurrency limits of each target, and
the delivery queue: with no Redis configured the embedded worker; with ``GATEWAY_REDIS_URL`` the
outbox relay that feeds arq. ``build_worker_container(settings)`` wires the same for a
``gateway worker`` process, without the HTTP app. Everything starts from here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from arq.connections import ArqRedis, create_pool
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError

from adapters.db.engine import Database, create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from adapters.erp import AdapterContext, make_adapter
from adapters.redis.circuit import RedisCircuits
from adapters.redis.connection import arq_settings, redis_client
from adapters.redis.limits import RedisConcurrencyLimiter, RedisRateLimiter
from adapters.redis.locks import RedisPollLock
from adapters.redis.queue import ArqJobQueue
from gateway.auth import KeyCache
from gateway.circuit import CircuitBoard, Circuits, CircuitState
from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, load_config, load_value_tables
from gateway.delivery import LEASE_MARGIN_S, DeliveryDeps
from gateway.errors import ConfigError
from gateway.governance import seed
from gateway.limits import (
    ConcurrencyLimiter,
    InProcessConcurrencyLimiter,
    InProcessRateLimiter,
    LimitsUnavailableError,
    RateLimiter,
)
from gateway.lines import StopLines
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ports import ErpAdapter, UnitOfWorkFactory
from gateway.publication import DictionaryWatcher
from gateway.readback import ReadbackScheduler, enabled_targets
from gateway.relay import OutboxRelay
from gateway.runtime import Runtime, bundled_dictionaries, bundled_rulesets, load_rules
from gateway.settings import Settings
from gateway.unknown_fields import UnknownFieldRecorder
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
    circuits: CircuitBoard | None = None  # in-process, or shared through Redis
    limiter: ConcurrencyLimiter | None = None
    rate: RateLimiter | None = None
    redis: Redis | None = None  # the shared limits' client (GATEWAY_REDIS_URL)
    arq: ArqRedis | None = None  # the job queue's pool
    relay: OutboxRelay | None = None
    permit_wait_s: float = 0.0
    lines: StopLines | None = None  # stop the line, per target
    dictionaries: DictionaryWatcher | None = None  # switches ``runtime`` when another version is published
    unknown_fields: UnknownFieldRecorder | None = None  # source fields no dictionary maps, per platform
    runtime_listeners: list[Callable[[Runtime], None]] = field(default_factory=list)
    readback: ReadbackScheduler | None = None  # shipments read back from the ERPs (gateway.readback)

    def set_runtime(self, runtime: Runtime) -> None:
        """Swap in a Runtime of newly published dictionaries: for requests (which read
        ``container.runtime``), the embedded worker, and whoever registered in ``runtime_listeners``
        (an arq worker's job context)."""
        self.runtime = runtime
        if self.worker is not None:
            self.worker.deps.runtime = runtime
        for listener in self.runtime_listeners:
            listener(runtime)

    def delivery_deps(self) -> DeliveryDeps:
        return DeliveryDeps(
            uow_factory=self.uow_factory,
            runtime=self.runtime,
            adapters=self.adapters,
            clock=self.clock,
            metrics=self.metrics,
            rng=random.Random(),
            circuits=self.circuits,
            limiter=self.limiter,
            rate=self.rate,
            permit_wait_s=self.permit_wait_s,
            lines=self.lines,
        )

    async def circuit_states(self) -> dict[str, str]:
        """Each target's circuit (shared through Redis when configured); ``unknown`` for every
        target when the shared state is out of reach."""
        targets = list(self.config.targets)
        if self.circuits is None:
            return dict.fromkeys(targets, "closed")
        try:
            return dict(await self.circuits.read(targets))
        except LimitsUnavailableError:
            return dict.fromkeys(targets, "unknown")

    def start_delivery(self) -> None:
        """Start what this process runs in the background: its part of the delivery path (the
        embedded worker or the relay), stop-the-line, and the watch on published dictionaries."""
        if self.dictionaries is not None:
            self.dictionaries.start()
        if self.unknown_fields is not None:
            self.unknown_fields.start()
        if self.worker is not None:
            self.worker.start()
        if self.relay is not None:
            self.relay.start()
        if self.lines is not None:
            self.lines.start()
        if self.readback is not None:
            self.readback.start()

    def wake_delivery(self) -> None:
        """New or requeued outbox rows were committed: deliver (or relay) them soon."""
        if self.worker is not None:
            self.worker.wake()
        if self.relay is not None:
            self.relay.wake()

    async def aclose(self) -> None:
        if self.readback is not None:
            await self.readback.stop()
        if self.dictionaries is not None:
            await self.dictionaries.stop()
        if self.unknown_fields is not None:
            await self.unknown_fields.stop()
        if self.lines is not None:
            await self.lines.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.arq is not None:
            await self.arq.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        for adapter in self.adapters.values():
            await adapter.aclose()
        if self.http is not None:
            await self.http.aclose()
        await self.db.dispose()


def prepare_database(settings: Settings) -> None:
    """Apply migrations. ``serve`` does this itself for an embedded SQLite; for PostgreSQL run
    ``gateway db upgrade`` as a deploy step so many replicas never race on a schema change."""
    upgrade(settings.database_url)


async def load_dictionaries(
    uow_factory: UnitOfWorkFactory, config: GatewayConfig, *, clock: Clock
) -> DictionaryWatcher:
    """Bring the bundled dictionaries and rule sets into the database (``gateway.governance.seed``)
    and load the published ones: a watcher holding the Runtime, ready to follow later publications.

    Raises:
        ConfigError: a bundled file does not compile, or the database is not migrated.
    """
    files = bundled_dictionaries(config)
    rulesets = bundled_rulesets(config)
    tables = {name: load_value_tables(config, name) for name in config.targets}
    # The value tables, and the configured rule set's file (which names it); the dictionaries and
    # the rule set in use come from the database (the published versions).
    base = Runtime(config, platform_dictionaries={}, erp_dictionaries={}, ruleset=load_rules(config), tables=tables)
    watcher = DictionaryWatcher(uow_factory, base)
    watcher.remember([f.compiled for f in files])
    try:
        for line in await seed(uow_factory, [*files, *rulesets], clock=clock):
            log.info("bundled file: " + line)
        await watcher.load()
    except DBAPIError as exc:
        raise ConfigError(
            f"cannot read the dictionary versions ({type(exc).__name__}): is the database migrated?",
            f"无法读取字典版本（{type(exc).__name__}）：数据库是否已迁移？",
            hint="Run `gateway db upgrade` against GATEWAY_DATABASE_URL, then start again",
        ) from exc
    return watcher


async def _build_core(settings: Settings, *, clock: Clock | None, migrate: bool | None) -> Container:
    """Database, dictionaries, ERP adapters, circuits and limits: what serving and delivering share."""
    config = load_config(settings.config_path)
    if migrate if migrate is not None else settings.is_sqlite:
        prepare_database(settings)
    db = create_engine(settings.database_url, synchronous=settings.sqlite_synchronous)  # type: ignore[arg-type]
    uow_factory = SqlUnitOfWorkFactory(db)
    try:
        watcher = await load_dictionaries(uow_factory, config, clock=clock or SystemClock())
    except BaseException:
        await db.dispose()
        raise
    runtime = watcher.runtime
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    metrics = Metrics(targets=config.targets)

    def circuit_changed(target: str, old: CircuitState, new: CircuitState) -> None:
        metrics.set_circuit(target, new)
        log.warning("circuit changed", target=target, old=old, new=new)

    c = Container(
        settings=settings,
        config=config,
        runtime=runtime,
        db=db,
        uow_factory=uow_factory,
        metrics=metrics,
        clock=clock or SystemClock(),
        keys=KeyCache(),
        http=http,
        dictionaries=watcher,
    )
    watcher.on_change = c.set_runtime
    c.unknown_fields = UnknownFieldRecorder(c.uow_factory, c.clock)
    circuit_configs = {n: t.circuit for n, t in config.targets.items()}
    c.lines = StopLines(config.targets, c.uow_factory, c.clock, metrics=metrics, http=http, on_resume=c.wake_delivery)
    for name, t in config.targets.items():
        if settings.lease_seconds < t.timeout_s + t.connect_timeout_s + LEASE_MARGIN_S:
            log.warning(
                "the delivery lease is shorter than the ERP's timeout: slow answers end as unknown outcomes",
                target=name,
                lease_seconds=settings.lease_seconds,
                timeout_s=t.timeout_s + t.connect_timeout_s,
                hint="Raise GATEWAY_LEASE_SECONDS above the target's timeout_s + connect_timeout_s",
            )
    limits = {n: t.limits for n, t in config.targets.items()}
    if not settings.fingerprint_key:
        log.warning(
            "GATEWAY_FINGERPRINT_KEY is unset: duplicate fingerprints use a built-in key; "
            "set a secret of 32 or more random characters in production"
        )
    if settings.redis_url:
        c.redis = redis_client(settings.redis_url)
        c.limiter = RedisConcurrencyLimiter(c.redis, limits)
        c.rate = RedisRateLimiter(c.redis, limits)
        c.circuits = RedisCircuits(c.redis, circuit_configs, on_change=circuit_changed)
    else:
        c.limiter, c.rate = InProcessConcurrencyLimiter(limits), InProcessRateLimiter(limits)
        c.circuits = Circuits(circuit_configs, on_change=circuit_changed)
    c.adapters = {
        name: make_adapter(AdapterContext(name=name, target=t, http=http, redis=c.redis, uow_factory=uow_factory))
        for name, t in config.targets.items()
    }
    return c


async def connect_queue(settings: Settings) -> ArqRedis:
    """arq's pool on ``GATEWAY_REDIS_URL``."""
    assert settings.redis_url  # noqa: S101 - callers check
    return await create_pool(arq_settings(settings.redis_url))


async def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    start_worker: bool | None = None,
    migrate: bool | None = None,
) -> Container:
    """Wire everything for one ``gateway serve`` process; ``start_worker=False`` builds an API
    without delivery. With Redis the process relays outbox rows to arq and delivers nothing itself."""
    container = await _build_core(settings, clock=clock, migrate=migrate)
    run_worker = settings.embedded_queue if start_worker is None else start_worker
    if run_worker and settings.embedded_queue:
        container.worker = EmbeddedWorker(
            container.delivery_deps(),
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds,
        )
        _wire_readback(container, lock=None)  # one process delivers: it reads shipments back too
    elif run_worker or (start_worker is None and not settings.embedded_queue):
        container.arq = await connect_queue(settings)
        container.relay = OutboxRelay(container.uow_factory, ArqJobQueue(container.arq), container.clock)
    log.info(
        "gateway wired",
        database=container.db.dialect,
        targets=sorted(container.config.targets),
        dictionaries={d.name: d.version for d in container.runtime.dictionaries()},
        rules_version=container.runtime.ruleset.version,
        queue="embedded" if container.worker else ("arq" if container.relay else "none"),
    )
    return container


async def build_worker_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    """Wire a ``gateway worker`` process: the shared clients of the arq job (database, HTTP, ERP
    adapters, circuits, Redis limits) and the outbox relay; no HTTP app, no migrations."""
    if not settings.redis_url:
        raise ConfigError("gateway worker needs GATEWAY_REDIS_URL", "gateway worker 需要 GATEWAY_REDIS_URL")
    container = await _build_core(settings, clock=clock, migrate=False)
    container.permit_wait_s = 2.0  # a job waits briefly for a permit rather than bounce through the outbox
    container.arq = await connect_queue(settings)
    container.relay = OutboxRelay(container.uow_factory, ArqJobQueue(container.arq), container.clock)
    assert container.redis is not None  # noqa: S101 - _build_core connects it when redis_url is set
    _wire_readback(container, lock=RedisPollLock(container.redis))  # one worker polls a target at a time
    log.info("worker wired", database=container.db.dialect, targets=sorted(container.config.targets))
    return container


def _wire_readback(container: Container, *, lock: RedisPollLock | None) -> None:
    """The shipment read-back's scheduler, when a target enables it (``[targets.X.readback]``)."""
    if enabled_targets(container.config.targets):
        container.readback = ReadbackScheduler(
            container.config.targets,
            container.adapters,
            container.uow_factory,
            container.clock,
            metrics=container.metrics,
            lock=lock,
            limiter=container.limiter,  # its calls count against the target's concurrency, as deliveries do
            lines=container.lines,  # and a stopped line or an open circuit stops them too
            circuits=container.circuits,
        )
