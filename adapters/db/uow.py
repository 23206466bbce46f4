"""The unit of work on SQLAlchemy Core: one connection, one transaction, every repository.

PostgreSQL uses an ``AsyncConnection``; reads on SQLite a pooled plain connection
(``sqlite_reader.py``). A write unit of work on SQLite uses the process's single writer
(``sqlite_writer.py``), with the statements every order runs on the plain driver
(``sqlite_direct.py``). It holds the writer lock from ``__aenter__`` until ``commit()`` or the end
of the block, so never open a write unit of work inside another in the same task (it would wait for
itself). ``write=False`` takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.audit_log import SqlAuditLog
from adapters.db.controls import SqlTargetControls
from adapters.db.dictionaries import SqlDictionaryVersions
from adapters.db.engine import Database, Executor
from adapters.db.erp_handles import SqlErpHandleRepository
from adapters.db.erp_shipments import SqlErpShipmentRepository
from adapters.db.intercepts import SqlInterceptRepository
from adapters.db.outbox import SqlOutbox
from adapters.db.pg_group import PgGroupCommitter
from adapters.db.pg_group_unit import GroupedUnitOfWork
from adapters.db.refunds import SqlRefundRepository
from adapters.db.repositories import (
    SqlApiKeyRepository,
    SqlDeadLetterRepository,
    SqlOrderRepository,
    SqlPayloadStore,
)
from adapters.db.reviews import SqlReviewRepository
from adapters.db.sqlite_direct import (
    SqliteAuditLog,
    SqliteOrderRepository,
    SqliteOutbox,
    SqlitePayloadStore,
    SqliteRefundRepository,
)
from adapters.db.sqlite_reader import ReaderSession
from adapters.db.sqlite_stock import SqliteStockRepository
from adapters.db.sqlite_writer import WriterSession
from adapters.db.stock import SqlFingerprintRepository, SqlStockRepository
from adapters.db.unknown_fields import SqlUnknownFields


class _AsyncSession:
    """An ``AsyncConnection`` in a transaction, with the ``WriterSession`` interface."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()

    async def close(self) -> None:
        try:
            if self.conn.in_transaction():
                await self.conn.rollback()
        finally:
            await self.conn.close()


class SqlUnitOfWork:
    """``gateway.ports.UnitOfWork``: leaving the block without ``commit()`` rolls back."""

    orders: SqlOrderRepository
    payloads: SqlPayloadStore
    outbox: SqlOutbox
    intercepts: SqlInterceptRepository
    reviews: SqlReviewRepository
    dead_letters: SqlDeadLetterRepository
    audit: SqlAuditLog
    keys: SqlApiKeyRepository
    controls: SqlTargetControls
    refunds: SqlRefundRepository  # SqliteRefundRepository in SQLite's writer
    dictionaries: SqlDictionaryVersions
    unknown_fields: SqlUnknownFields
    stock: SqlStockRepository
    fingerprints: SqlFingerprintRepository
    erp_handles: SqlErpHandleRepository
    erp_shipments: SqlErpShipmentRepository

    def __init__(self, db: Database, *, write: bool = True) -> None:
        self._db = db
        self._write = write
        self._session: WriterSession | ReaderSession | _AsyncSession | None = None

    async def __aenter__(self) -> Self:
        conn: Executor
        if self._write and self._db.sqlite_writer is not None:
            session = WriterSession(self._db.sqlite_writer)
            await session.begin()
            self._session = conn = session
            self.orders = SqliteOrderRepository(session)
            self.payloads = SqlitePayloadStore(session)
            self.outbox = SqliteOutbox(session)
            self.audit = SqliteAuditLog(session)
        else:
            if self._db.sqlite_reader is not None:
                self._session = conn = ReaderSession(self._db.sqlite_reader)
            else:
                async_conn = await self._db.engine.connect()
                try:
                    await async_conn.begin()
                except BaseException:
                    await async_conn.close()
                    raise
                self._session, conn = _AsyncSession(async_conn), async_conn
            self.orders = SqlOrderRepository(conn)
            self.payloads = SqlPayloadStore(conn)
            self.outbox = SqlOutbox(conn)
            self.audit = SqlAuditLog(conn)
        self.intercepts = SqlInterceptRepository(conn)
        self.reviews = SqlReviewRepository(conn)
        self.dead_letters = SqlDeadLetterRepository(conn)
        self.keys = SqlApiKeyRepository(conn)
        self.controls = SqlTargetControls(conn)
        self.dictionaries = SqlDictionaryVersions(conn)
        self.refunds = (
            SqliteRefundRepository(self._session)
            if isinstance(self._session, WriterSession)
            else SqlRefundRepository(conn)
        )
        self.unknown_fields = SqlUnknownFields(conn)
        writer = self._session if isinstance(self._session, WriterSession) else None
        self.stock = SqliteStockRepository(writer) if writer is not None else SqlStockRepository(conn)
        self.fingerprints = SqlFingerprintRepository(conn)
        self.erp_handles = SqlErpHandleRepository(conn)
        self.erp_shipments = SqlErpShipmentRepository(conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> WriterSession | ReaderSession | _AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        return self._session

    async def commit(self) -> None:
        """Make the work durable; returns once it is (on SQLite, once its commit group is)."""
        await self._open().commit()

    async def rollback(self) -> None:
        await self._open().rollback()


class SqlUnitOfWorkFactory:
    """``gateway.ports.UnitOfWorkFactory`` over one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.group_committer = PgGroupCommitter(db.engine) if db.dialect == "postgresql" else None

    def __call__(self, *, write: bool = True) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, write=write)

    @property
    def group_commit(self) -> Callable[[], GroupedUnitOfWork] | None:
        """PostgreSQL: units of work for intake whose writes are stored together with other
        requests' (``pg_group.py``); None on SQLite, whose writer groups its commits itself."""
        committer = self.group_committer
        if committer is None:
            return None
        return lambda: GroupedUnitOfWork(self.db, committer)
