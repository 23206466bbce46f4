"""Opening the database: SQLite (embedded default) or PostgreSQL, behind one small ``Database``.

SQLite allows one writer at a time. Rather than let writers collide and spin on ``busy_timeout``,
each process funnels its writes through one ``asyncio.Lock`` and every write transaction starts
with ``BEGIN IMMEDIATE``, so it holds the file's write lock from its first statement (a deferred
transaction that reads first and writes later can fail with SQLITE_BUSY instead of waiting).
The driver's own implicit BEGIN is switched off as in the SQLAlchemy docs ("Enabling
Non-Legacy SQLite Transactional Modes"). Readers take no lock: WAL lets them run beside the writer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///./var/gateway.db"

_WRITE_OPTION = "gateway_write"  # execution option marking connections of write transactions

Synchronous = Literal["FULL", "NORMAL"]


def dumps_json(value: Any) -> str:
    """JSON text for JSON columns (msgspec: fast, and it knows Decimal and datetime)."""
    return msgspec.json.encode(value).decode()


def loads_json(text: str | bytes) -> Any:
    return msgspec.json.decode(text)


@dataclass(frozen=True, slots=True)
class Database:
    """An open database: the engine, the facts about its dialect, and (SQLite) the writer lock."""

    url: str
    engine: AsyncEngine
    dialect: Literal["sqlite", "postgresql"]
    writer: AsyncEngine  # the same pool, with write transactions marked for BEGIN IMMEDIATE
    write_lock: asyncio.Lock | None  # SQLite only: one writer per process

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_engine(
    url: str = DEFAULT_URL, *, synchronous: Synchronous = "FULL", pool_size: int = 5
) -> Database:
    """Open ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``).

    Args:
        url: an async SQLAlchemy URL; a SQLite file's folder is created when missing.
        synchronous: SQLite ``PRAGMA synchronous``; ``FULL`` survives power loss, ``NORMAL`` is
            faster and in WAL mode may lose the last commits (never corrupts) on power loss.
        pool_size: PostgreSQL connections kept open.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _open_sqlite(url, parsed.database, synchronous)
    if backend == "postgresql":
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
            json_serializer=dumps_json,
            json_deserializer=loads_json,
        )
        return Database(url=url, engine=engine, dialect="postgresql", writer=engine, write_lock=None)
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite+aiosqlite or postgresql+asyncpg"
    )


def ensure_sqlite_folder(database: str | None) -> None:
    """Create the folder of a SQLite file database (``./var`` by default)."""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _open_sqlite(url: str, database: str | None, synchronous: Synchronous) -> Database:
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    ensure_sqlite_folder(database)
    engine = create_async_engine(url, json_serializer=dumps_json, json_deserializer=loads_json)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={synchronous}",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    writer = engine.execution_options(**{_WRITE_OPTION: True})
    return Database(url=url, engine=engine, dialect="sqlite", writer=writer, write_lock=asyncio.Lock())
