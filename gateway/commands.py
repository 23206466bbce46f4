"""Bodies of the CLI commands that touch the database (part of the CLI, so it may use adapters)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.audit import Anchor, ChainCheck, head_anchor, verify_log
from gateway.auth import generate_key, hash_key
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.ids import new_id
from gateway.ports import ApiKeyRecord, UnitOfWorkFactory
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
