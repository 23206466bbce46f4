"""What only SQLite has: its pragmas, BEGIN IMMEDIATE and the group commit of the single writer."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from adapters.db.engine import create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from tests.support.storage import make_order

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- SQLite's writer (not conformance)


async def test_sqlite_pragmas_and_immediate_writes(tmp_path):
    from adapters.db.migrate import upgrade

    path = tmp_path / "nested" / "g.db"
    url = f"sqlite+aiosqlite:///{path}"
    db = create_engine(url, synchronous="NORMAL")  # creates the folder
    upgrade(url)
    factory = SqlUnitOfWorkFactory(db)
    try:
        async with db.engine.connect() as conn:
            pragmas = [
                (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
        assert pragmas == ["wal", 1, 10000, 1]

        def other_writer_can_begin() -> bool:
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                other.close()

        async with factory(write=False) as uow:
            await uow.orders.get("x")
            assert other_writer_can_begin()  # readers take no write lock
        async with factory() as uow:
            assert db.write_lock.locked()
            assert not other_writer_can_begin()  # BEGIN IMMEDIATE holds the file's write lock
        assert not db.write_lock.locked() and other_writer_can_begin()
    finally:
        await db.dispose()


async def test_sqlite_group_commit_keeps_units_apart(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    from adapters.db.migrate import upgrade

    upgrade(url)
    db = create_engine(url)
    factory = SqlUnitOfWorkFactory(db)
    commits = 0

    @event.listens_for(db.sqlite_writer.engine, "commit")
    def _count(_conn):
        nonlocal commits
        commits += 1

    async def unit(n: int) -> None:
        async with factory() as uow:
            await uow.orders.add(make_order(n))
            await uow.audit.append(actor="t", action="a", subject_type="order", subject_id=str(n), data={})
            if n == 7:
                raise RuntimeError("this unit fails")
            await uow.commit()

    try:
        results = await asyncio.gather(*(unit(n) for n in range(20)), return_exceptions=True)
        assert [n for n, r in enumerate(results) if r is not None] == [7]
        assert 1 <= commits < 19  # grouped
        async with factory(write=False) as uow:
            stored = await uow.orders.list(platform=None, platform_order_id=None, cursor=None, limit=50)
            check = await uow.audit.verify()
        assert sorted(o.id for o in stored.items) == sorted(make_order(n).id for n in range(20) if n != 7)
        assert (check.ok, check.checked) == (True, 19)

        async with factory() as uow:  # work after commit() starts a new unit
            await uow.orders.add(make_order(100))
            await uow.commit()
            await uow.orders.add(make_order(101))
            await uow.commit()
            await uow.orders.add(make_order(102))  # left without commit: rolled back
        assert not db.write_lock.locked()
        async with factory(write=False) as uow:
            assert await uow.orders.get(make_order(101).id) is not None
            assert await uow.orders.get(make_order(102).id) is None

        # A failed group COMMIT fails every unit in the group, stores none, and the writer recovers.
        real_commit = Connection.commit
        failures = 0

        def failing_commit(self):
            nonlocal failures
            if self.engine is db.sqlite_writer.engine and failures == 0:
                failures += 1
                self.rollback()
                raise sqlite3.OperationalError("disk I/O error")
            return real_commit(self)

        monkeypatch.setattr(Connection, "commit", failing_commit)
        results = await asyncio.gather(*(unit(n) for n in range(200, 205)), return_exceptions=True)
        failed = [n for n, r in zip(range(200, 205), results, strict=True) if r is not None]
        assert failures == 1 and failed
        async with factory(write=False) as uow:
            for n in range(200, 205):
                assert (await uow.orders.get(make_order(n).id) is None) == (n in failed)
            assert (await uow.audit.verify()).ok
    finally:
        await db.dispose()
