"""The unit of work on SQLAlchemy Core: one ``AsyncConnection``, one transaction, every repository.

A write unit of work on SQLite first takes the process's writer lock (``Database.write_lock``) and
begins with ``BEGIN IMMEDIATE``; it is not re-entrant, so never open a write unit of work inside
another in the same task. ``write=False`` takes no lock and begins a plain (deferred) transaction.
"""

from __future__ import annotations

from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.audit_log import SqlAuditLog
from adapters.db.engine import Database
from adapters.db.outbox import SqlOutbox
from adapters.db.repositories import (
    SqlApiKeyRepository,
    SqlDeadLetterRepository,
    SqlInterceptRepository,
    SqlOrderRepository,
    SqlPayloadStore,
)


class SqlUnitOfWork:
    """``gateway.ports.UnitOfWork``: leaving the block without ``commit()`` rolls back."""

    orders: SqlOrderRepository
    payloads: SqlPayloadStore
    outbox: SqlOutbox
    intercepts: SqlInterceptRepository
    dead_letters: SqlDeadLetterRepository
    audit: SqlAuditLog
    keys: SqlApiKeyRepository

    def __init__(self, db: Database, *, write: bool = True) -> None:
        self._db = db
        self._write = write
        self._lock = db.write_lock if write else None
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        if self._lock is not None:
            await self._lock.acquire()
        try:
            conn = await (self._db.writer if self._write else self._db.engine).connect()
            try:
                await conn.begin()
            except BaseException:
                await conn.close()
                raise
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self._conn = conn
        self.orders = SqlOrderRepository(conn)
        self.payloads = SqlPayloadStore(conn)
        self.outbox = SqlOutbox(conn)
        self.intercepts = SqlInterceptRepository(conn)
        self.dead_letters = SqlDeadLetterRepository(conn)
        self.audit = SqlAuditLog(conn)
        self.keys = SqlApiKeyRepository(conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    if conn.in_transaction():
                        await conn.rollback()
                finally:
                    await conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    @property
    def connection(self) -> AsyncConnection:
        """The open connection, for adapters that need a statement the ports do not offer."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        return self._conn

    async def commit(self) -> None:
        await self.connection.commit()

    async def rollback(self) -> None:
        await self.connection.rollback()


class SqlUnitOfWorkFactory:
    """``gateway.ports.UnitOfWorkFactory`` over one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, *, write: bool = True) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, write=write)
