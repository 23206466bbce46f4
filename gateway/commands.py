"""Bodies of the CLI commands that touch the database (part of the CLI, so it may use adapters)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import msgspec

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.audit import Anchor, ChainCheck, head_anchor, verify_log
from gateway.auth import generate_key, hash_key
from gateway.clock import SystemClock
from gateway.config import GatewayConfig, TargetConfig, load_config
from gateway.errors import ConfigError
from gateway.ids import new_id
from gateway.ports import ApiKeyRecord, ErpAdapter, UnitOfWorkFactory
from gateway.readback import Progress as ReadbackProgress
from gateway.readback import ReadbackReport, ReadbackScheduler, enabled_targets, poll_once
from gateway.retention import Progress, PurgeReport, payload_days, purge_payloads
from gateway.runtime import Runtime
from gateway.settings import Settings

ROLES = ("platform", "wms", "erp", "it", "auditor", "admin")


async def add_key(uow_factory: UnitOfWorkFactory, *, role: str, label: str | None, actor: str = "cli") -> str:
    """Create a key, store its hash, audit the act; return the key (shown once)."""
    key = generate_key(role)
    record = ApiKeyRecord(id=new_id(), role=role, key_hash=hash_key(key), label=label)
    async with uow_factory() as uow:
        await uow.keys.add(record)
        await uow.audit.append(
            actor=actor,
            action="api_key.created",
            subject_type="api_key",
            subject_id=record.id,
            data={"role": role, "label": label},
        )
        await uow.commit()
    return key


async def create_key(settings: Settings, *, role: str, label: str | None) -> str:
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = create_engine(settings.database_url)
    try:
        return await add_key(SqlUnitOfWorkFactory(db), role=role, label=label)
    finally:
        await db.dispose()


async def verify_audit(settings: Settings, anchor: Anchor | None = None) -> ChainCheck:
    db = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWorkFactory(db)(write=False) as uow:
            return await verify_log(uow.audit, anchor)
    finally:
        await db.dispose()


async def anchor_audit(settings: Settings) -> tuple[ChainCheck, Anchor | None]:
    """The chain's head as an anchor, once a walk proved the chain sound."""
    db = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWorkFactory(db)(write=False) as uow:
            return await head_anchor(uow.audit)
    finally:
        await db.dispose()


async def purge_retention(
    settings: Settings, *, dry_run: bool, actor: str, progress: Progress | None = None
) -> PurgeReport:
    """``gateway retention purge``: the configured retention applied to GATEWAY_DATABASE_URL."""
    days = payload_days(load_config(settings.config_path))
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = create_engine(settings.database_url)
    try:
        return await purge_payloads(
            SqlUnitOfWorkFactory(db),
            days=days,
            now=SystemClock().now(),
            actor=actor,
            dry_run=dry_run,
            progress=progress,
        )
    finally:
        await db.dispose()


@asynccontextmanager
async def governed(settings: Settings) -> AsyncIterator[tuple[UnitOfWorkFactory, Runtime]]:
    """The configured database and the Runtime of its published dictionaries, for the dictionary
    commands of the CLI (the bundled files are seeded first, as every start does)."""
    from gateway.bootstrap import load_dictionaries

    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = create_engine(settings.database_url)
    try:
        uow_factory = SqlUnitOfWorkFactory(db)
        watcher = await load_dictionaries(uow_factory, load_config(settings.config_path), clock=SystemClock())
        yield uow_factory, watcher.runtime
    finally:
        await db.dispose()


def readback_targets(config: GatewayConfig, name: str | None) -> dict[str, TargetConfig]:
    """The targets ``gateway erp readback`` polls: the one named (even one whose read-back is not
    enabled: the operator asked for it), else every target that enables it.

    Raises:
        ConfigError: the named target is not configured, or no target enables the read-back.
    """
    if name is not None:
        if name not in config.targets:
            raise ConfigError(
                f"target {name!r} is not configured; configured: {', '.join(sorted(config.targets)) or 'none'}",
                f"目标 {name!r} 未配置",
                hint="Name a target of GATEWAY_CONFIG's [targets]",
            )
        chosen = config.targets[name]
        return {name: msgspec.structs.replace(chosen, readback=msgspec.structs.replace(chosen.readback, enabled=True))}
    enabled = enabled_targets(config.targets)
    if not enabled:
        raise ConfigError(
            "no target enables the shipment read-back",
            "没有目标启用发货回读",
            hint="Set [targets.NAME.readback] enabled = true in GATEWAY_CONFIG, or name one with --target",
        )
    return enabled


async def run_readback(
    settings: Settings, *, target: str | None, once: bool, progress: ReadbackProgress | None = None
) -> ReadbackReport | None:
    """``gateway erp readback``: one round over the targets (``once``: its report), or rounds every
    interval until SIGTERM or Ctrl-C (None), the first one at once, with GATEWAY_REDIS_URL taking
    the workers' lock."""
    from adapters.erp import AdapterContext, make_adapter
    from adapters.redis.connection import redis_client
    from adapters.redis.limits import RedisConcurrencyLimiter
    from adapters.redis.locks import RedisPollLock

    targets = readback_targets(load_config(settings.config_path), target)
    if settings.is_sqlite:
        upgrade(settings.database_url)
    db = create_engine(settings.database_url)
    http = httpx.AsyncClient()
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    uow_factory = SqlUnitOfWorkFactory(db)
    adapters: dict[str, ErpAdapter] = {}
    scheduler: ReadbackScheduler | None = None
    try:
        for name, t in targets.items():
            ctx = AdapterContext(name=name, target=t, http=http, redis=redis, uow_factory=uow_factory)
            adapters[name] = make_adapter(ctx)
        # With Redis, the calls take the targets' shared concurrency permits, as the workers' do.
        limiter = RedisConcurrencyLimiter(redis, {n: t.limits for n, t in targets.items()}) if redis else None
        if once:
            return await poll_once(targets, adapters, uow_factory, SystemClock(), progress=progress, limiter=limiter)
        lock = RedisPollLock(redis) if redis is not None else None
        scheduler = ReadbackScheduler(
            targets, adapters, uow_factory, SystemClock(), lock=lock, immediately=True, limiter=limiter
        )
        scheduler.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # as a service: stop between rounds
        try:
            await stop.wait()  # or Ctrl-C cancels this task
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        return None
    finally:
        if scheduler is not None:
            await scheduler.stop()
        for adapter in adapters.values():
            await adapter.aclose()
        await http.aclose()
        if redis is not None:
            await redis.aclose()
        await db.dispose()
