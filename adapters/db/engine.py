"""Opening the database: SQLite (embedded default) or PostgreSQL, behind one small ``Database``.

PostgreSQL: one ``asyncpg`` engine for everything. SQLite: the process's single writer
(``sqlite_writer.py``), which runs write transactions on the stdlib driver with group commit; a pool
of stdlib read connections for read units of work (``sqlite_reader.py``; readers run beside the
writer in WAL mode and take no lock); and an ``aiosqlite`` engine for migrations and the few
whole-table counts of the status page.
All SQLite engines switch the driver's implicit BEGIN off and emit their own, as in the SQLAlchemy
docs ("Enabling Non-Legacy SQLite Transactional Modes"); the writer's is ``BEGIN IMMEDIATE``, so it
holds the file's write lock from its first statement instead of failing with SQLITE_BUSY later.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from adapters.db.sqlite_writer import SqliteWriter

DEFAULT_URL = "sqlite+aiosqlite:///./var/gateway.db"

# Execution options that make a SQLite transaction start with BEGIN IMMEDIATE (migrations use it).
BEGIN_IMMEDIATE = {"gateway_begin_immediate": True}

Synchronous = Literal["FULL", "NORMAL"]
WAL_AUTOCHECKPOINT_PAGES = 250


class Executor(Protocol):
    """What the repositories need of a connection: an ``AsyncConnection`` or a ``WriterSession``."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...


def dumps_json(value: Any) -> str:
    """JSON text for JSON columns (msgspec: fast, and it knows Decimal and datetime)."""
    return msgspec.json.encode(value).decode()


def loads_json(text: str | bytes) -> Any:
    return msgspec.json.decode(text)


@dataclass(frozen=True, slots=True)
class Database:
    """An open database: its engine, the facts about its dialect and, on SQLite, the writer."""

    url: str
    dialect: Literal["sqlite", "postgresql"]
    engine: AsyncEngine  # everything on PostgreSQL; migrations and table counts on SQLite
    sqlite_writer: SqliteWriter | None = None
    sqlite_reader: Engine | None = None  # read units of work on SQLite (``sqlite_reader.py``)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def write_lock(self) -> asyncio.Lock | None:
        """SQLite: the lock every write unit of work holds (one writer per process)."""
        return self.sqlite_writer.lock if self.sqlite_writer else None

    async def dispose(self) -> None:
        if self.sqlite_writer is not None:
            self.sqlite_writer.close()
        if self.sqlite_reader is not None:
            self.sqlite_reader.dispose()
        await self.engine.dispose()


def create_engine(url: str = DEFAULT_URL, *, synchronous: Synchronous = "FULL", pool_size: int = 5) -> Database:
    """Open ``url`` (``sqlite+aiosqlite:///FILE`` or ``postgresql+asyncpg://…``).

    Args:
        url: an async SQLAlchemy URL; a SQLite file's folder is created when missing.
        synchronous: SQLite ``PRAGMA synchronous``; ``FULL`` survives power loss, ``NORMAL`` is
            faster and in WAL mode may lose the last commits (never corrupts) on power loss.
        pool_size: connections kept open (PostgreSQL; SQLite readers).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    json = {"json_serializer": dumps_json, "json_deserializer": loads_json}
    if backend == "postgresql":
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, **json)
        return Database(url=url, dialect="postgresql", engine=engine)
    if backend != "sqlite":
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string()!r}: use sqlite+aiosqlite or postgresql+asyncpg"
        )
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        raise ValueError(
            "SQLite needs a file path (the readers and the writer share it), e.g. sqlite+aiosqlite:///./var/gateway.db"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_async_engine(url, pool_size=pool_size, **json)
    _configure_sqlite(engine.sync_engine, synchronous, immediate=False)
    sync_url: URL = parsed.set(drivername="sqlite+pysqlite")
    # check_same_thread: BEGIN and COMMIT run on a helper thread, one call at a time; a pooled
    # reader may be opened on one thread (a test's) and used on another (its server's).
    any_thread = {"check_same_thread": False}
    writer_engine = create_sync_engine(sync_url, connect_args=any_thread, **json)
    _configure_sqlite(writer_engine, synchronous, immediate=True)
    # max_overflow=-1: a busy moment opens more connections rather than block the event loop.
    reader = create_sync_engine(sync_url, connect_args=any_thread, pool_size=pool_size, max_overflow=-1, **json)
    _configure_sqlite(reader, synchronous, immediate=False)
    return Database(
        url=url, dialect="sqlite", engine=engine, sqlite_writer=SqliteWriter(writer_engine), sqlite_reader=reader
    )


def _configure_sqlite(engine: Any, synchronous: Synchronous, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"synchronous={synchronous}", "busy_timeout=10000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        if immediate:
            # The writer's COMMIT that fills the WAL past this many pages also checkpoints them into
            # the database file, holding the writer meanwhile. SQLite's 1,000 pages made that
            # COMMIT 7–15 ms (up to 300 ms on a busy disk); 250 keeps it near 5 ms, and the intake
            # rate did not change.
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        wanted = immediate or conn.get_execution_options().get("gateway_begin_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if wanted else "BEGIN")
