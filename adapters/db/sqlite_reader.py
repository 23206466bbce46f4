"""SQLite reads on the event-loop thread, from a pool of plain stdlib connections.

On aiosqlite a read unit of work cost about 1.2 ms of loop-thread CPU for one primary-key SELECT:
the pool checkout, BEGIN, the SELECT and the ROLLBACK each went to aiosqlite's thread and back
through SQLAlchemy's greenlet bridge, ten times the statement itself. In WAL mode a reader never
waits for the writer (only for the recovery of a crashed WAL index), and every read the gateway
makes goes through a key or an index with a LIMIT, so, as for the writer's statements, running
them directly costs less than handing them off. Each read unit of work has its own connection
(its own snapshot); the pool grows past ``pool_size`` instead of ever blocking the loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql import Executable


class ReaderSession:
    """A read unit of work's connection: ``execute`` as on an ``AsyncConnection``, in one snapshot
    (a deferred BEGIN: no lock until the first SELECT, and never the write lock)."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect()
        self.dialect: Dialect = engine.dialect
        try:
            self._conn.begin()
        except BaseException:
            self._conn.close()
            raise

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)

    async def commit(self) -> None:
        self._conn.commit()  # nothing was written: this ends the snapshot; the next read begins anew

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        try:
            if self._conn.in_transaction():
                self._conn.rollback()
        finally:
            self._conn.close()
