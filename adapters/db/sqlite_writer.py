"""SQLite writes: one writer per process, statements on the event-loop thread, commits in groups.

Why not aiosqlite for writes: every statement costs it several thread hand-offs, which held an
intake unit of work (eight statements) to about 140 per second. A write transaction is a few
statements of tens of microseconds each, so they run directly on the loop thread with the stdlib
driver; only the two calls that can wait run on a helper thread: ``BEGIN IMMEDIATE`` (another
process may hold the file's write lock; ``busy_timeout`` waits) and ``COMMIT`` (fsync).

Group commit: each unit of work is a SAVEPOINT inside a shared transaction. ``commit()`` releases
the savepoint, hands the writer lock to the next unit and waits; a flush queued on the same lock
runs once the units already waiting are done and COMMITs them all at once. So ``commit()`` still
returns only when the unit is durable, and a unit that rolls back undoes only its savepoint.
If the group's COMMIT fails, every unit in it gets the error (none of them was stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql import Executable

T = TypeVar("T")

_SAVEPOINT = "gateway_uow"


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a helper thread; if we are cancelled meanwhile, still wait for it to finish,
    so the connection is never used by two threads at once."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class SqliteWriter:
    """The process's one SQLite write connection, its lock, and the group being committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = asyncio.Lock()
        self._conn: Connection | None = None
        self.driver: sqlite3.Connection | None = None  # the stdlib connection under ``_conn``
        self._waiting: list[asyncio.Future[None]] = []  # units released, awaiting the group COMMIT
        self._flush: asyncio.Task[None] | None = None
        # The audit chain's head as this process last wrote it, or None: a hint that saves a read
        # per entry. ``sqlite_direct.SqliteAuditLog`` only trusts it through a conditional UPDATE.
        self.audit_head: tuple[int, str] | None = None

    async def begin(self) -> Connection:
        """Take the writer lock and open one unit's savepoint in the group transaction."""
        await self.lock.acquire()
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            conn = self._conn
            self.driver = conn.connection.driver_connection
            if not conn.in_transaction():
                await _in_thread(conn.begin)  # BEGIN IMMEDIATE (engine event)
            # On the driver rather than begin_nested(): SQLAlchemy compiles its savepoint constructs
            # anew on every use, and even exec_driver_sql costs more than SQLite's own work here.
            self.driver.execute(f"SAVEPOINT {_SAVEPOINT}")
            return conn
        except BaseException:
            self._end_idle_transaction()
            self.lock.release()
            raise

    async def commit(self, conn: Connection) -> None:
        """Release the unit's savepoint, hand the lock on, and return once the group is durable."""
        try:
            self.driver.execute(f"RELEASE {_SAVEPOINT}")  # type: ignore[union-attr]
        except BaseException as exc:
            self._abandon(exc)
            raise
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        if self._flush is None:
            self._flush = asyncio.create_task(self._commit_group())
        self.lock.release()
        await done

    def rollback(self, conn: Connection) -> None:
        """Undo one unit (only its savepoint) and hand the lock on."""
        try:
            self.driver.execute(f"ROLLBACK TO {_SAVEPOINT}")  # type: ignore[union-attr]
            self.driver.execute(f"RELEASE {_SAVEPOINT}")  # type: ignore[union-attr]
        except BaseException as exc:
            self._abandon(exc)
            raise
        self._end_idle_transaction()
        self.lock.release()

    def _abandon(self, exc: BaseException) -> None:
        """A savepoint could not be released or rolled back: SQLite may have dropped the whole
        transaction, so the group is lost. Fail its waiting units, start clean, free the lock."""
        waiting, self._waiting = self._waiting, []
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()
        for done in waiting:
            if not done.done():
                done.set_exception(RuntimeError(f"the group commit was abandoned: {exc!r}"))
        self.lock.release()

    def _end_idle_transaction(self) -> None:
        """Nobody waits for the open transaction: end it, so other processes may write."""
        if self._flush is None and not self._waiting and self._conn is not None and self._conn.in_transaction():
            self._conn.rollback()

    async def _commit_group(self) -> None:
        async with self.lock:  # queued behind the units already waiting, which join this group
            waiting, self._waiting, self._flush = self._waiting, [], None
            try:
                if self._conn is not None and self._conn.in_transaction():
                    await _in_thread(self._conn.commit)
            except BaseException as exc:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.rollback()
                for done in waiting:
                    if done.done():
                        continue
                    if isinstance(exc, Exception):
                        done.set_exception(exc)
                    else:
                        done.cancel()
                if not isinstance(exc, Exception):
                    raise
            else:
                for done in waiting:
                    if not done.done():
                        done.set_result(None)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()
            self._conn.close()
            self._conn = self.driver = None
        self.engine.dispose()


class WriterSession:
    """A write unit of work's connection on SQLite: ``execute`` as on an ``AsyncConnection``.

    Work after ``commit()`` or ``rollback()`` opens a new savepoint (taking the lock again).
    """

    def __init__(self, writer: SqliteWriter) -> None:
        self._writer = writer
        self._conn: Connection | None = None  # set while this unit holds the writer
        self.dialect: Dialect = writer.engine.dialect

    async def begin(self) -> None:
        if self._conn is None:
            self._conn = await self._writer.begin()

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._writer.begin()
        return conn.execute(statement, parameters)

    async def driver(self) -> sqlite3.Connection:
        """The stdlib connection, inside this unit's savepoint (``sqlite_direct`` runs its fixed
        statements on it: same connection, same transaction as ``execute``)."""
        if self._conn is None:
            self._conn = await self._writer.begin()
        return self._writer.driver  # type: ignore[return-value]

    @property
    def writer(self) -> SqliteWriter:
        return self._writer

    async def commit(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._writer.commit(conn)

    async def rollback(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._writer.rollback(conn)

    close = rollback
