"""SQLite's plain-driver statements (``adapters/db/sqlite_direct.py``): the audit head this process
remembers must never fork the chain when someone else moved it, an accepted order stays at eight
statements, and a claim follows the outbox index however long the backlog."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.db.engine import Database, create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    upgrade(url)
    database = create_engine(url)
    try:
        yield database
    finally:
        await database.dispose()


async def _append(factory: SqlUnitOfWorkFactory, subject: str, *, commit: bool = True) -> int:
    async with factory() as uow:
        entry = await uow.audit.append(actor="t", action="x", subject_type="order", subject_id=subject, data={})
        if commit:
            await uow.commit()
    return entry.seq


async def _verify(factory: SqlUnitOfWorkFactory) -> tuple[bool, int]:
    async with factory(write=False) as uow:
        check = await uow.audit.verify()
    return check.ok, check.checked


def _append_in_another_process(url: str, subjects: list[str]) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from adapters.db.engine import create_engine
        from adapters.db.uow import SqlUnitOfWorkFactory

        async def main():
            db = create_engine({url!r})
            try:
                for subject in {subjects!r}:
                    async with SqlUnitOfWorkFactory(db)() as uow:
                        await uow.audit.append(
                            actor="cli", action="x", subject_type="order", subject_id=subject, data={{}}
                        )
                        await uow.commit()
            finally:
                await db.dispose()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)


async def test_audit_head_cache_follows_appends_by_another_process(db: Database):
    factory = SqlUnitOfWorkFactory(db)
    assert [await _append(factory, f"a{n}") for n in range(3)] == [1, 2, 3]
    assert db.sqlite_writer is not None and db.sqlite_writer.audit_head is not None
    assert db.sqlite_writer.audit_head[0] == 3

    _append_in_another_process(db.url, ["cli-1", "cli-2"])  # the head moves on without us

    assert await _append(factory, "a3") == 6  # the cached head (3) missed: re-read, no fork
    assert await _append(factory, "a4") == 7
    assert await _verify(factory) == (True, 7)


async def test_audit_head_cache_misses_on_the_same_seq_with_another_hash(db: Database):
    """Our entry 2 rolls back, then another writer's entry 2 commits: same seq, other hash."""
    ours, theirs = SqlUnitOfWorkFactory(db), SqlUnitOfWorkFactory(other := create_engine(db.url))
    try:
        assert await _append(ours, "ours-1") == 1
        assert await _append(ours, "ours-2-rolled-back", commit=False) == 2
        assert db.sqlite_writer is not None and db.sqlite_writer.audit_head is not None
        assert db.sqlite_writer.audit_head[0] == 2  # remembers an entry that is not there
        assert await _append(theirs, "theirs-2") == 2
        assert await _append(ours, "ours-3") == 3
    finally:
        await other.dispose()
    assert await _verify(ours) == (True, 3)
    async with ours(write=False) as uow:
        subjects = [e.subject_id for e in await uow.audit.list(after_seq=0, limit=10)]
    assert subjects == ["ours-1", "theirs-2", "ours-3"]


async def test_audit_head_cache_survives_a_failed_group(db: Database):
    """A unit that appends and then fails leaves the cache ahead of the table: still one chain."""
    factory = SqlUnitOfWorkFactory(db)
    await _append(factory, "a1")
    with pytest.raises(RuntimeError):
        async with factory() as uow:
            await uow.audit.append(actor="t", action="x", subject_type="order", subject_id="lost", data={})
            raise RuntimeError("the unit fails after its audit entry")
    assert await _append(factory, "a2") == 2
    assert await _verify(factory) == (True, 2)


async def test_a_claim_reads_the_outbox_in_index_order(db: Database):
    """No temporary B-tree over the due rows: a backlog of thousands costs what an empty outbox does
    (it did: 4.5 ms per claim with 5,000 pending rows, one claim per delivery)."""
    from datetime import UTC, datetime

    from sqlalchemy import event

    assert db.sqlite_writer is not None
    seen: list[tuple[str, Any]] = []

    @event.listens_for(db.sqlite_writer.engine, "before_cursor_execute")
    def _capture(_conn, _cursor, statement, parameters, _context, _many):  # noqa: ANN001
        if statement.startswith("UPDATE outbox SET state"):
            seen.append((statement, parameters))

    async with SqlUnitOfWorkFactory(db)() as uow:
        await uow.outbox.claim(owner="w", now=datetime(2030, 1, 1, tzinfo=UTC), lease_seconds=30, limit=8)
        raw = await uow.orders._session.driver()
        plans = [" | ".join(r[-1] for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}", p)) for sql, p in seen]
    expired, pending = plans  # leases are few: sorting them is fine; pending rows are the backlog
    assert "USING INDEX ix_outbox_state_available" in expired, expired
    assert "USING INDEX ix_outbox_state_available (state=? AND available_at<?)" in pending, pending
    assert "TEMP B-TREE" not in pending, pending


async def test_an_accepted_order_costs_nine_statements_and_its_savepoint(db: Database):
    """The binding look-up, the stock levels its rules read (OVERSELL, the warehouse action),
    payload, order, binding, timeline, audit head and entry, outbox row: counted on the writer's
    own connection, so nothing slips in unnoticed (it was eleven)."""
    from gateway.clock import SystemClock
    from gateway.config import load_config
    from gateway.intake import accept_order
    from gateway.runtime import load_runtime

    runtime = load_runtime(load_config(None, env={}))
    sample = (REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json").read_bytes()
    factory = SqlUnitOfWorkFactory(db)

    async def accept(body: bytes) -> int:
        clock, limit = SystemClock(), 1 << 20
        result = await accept_order(
            "taobao", body, shop_header=None, uow_factory=factory, runtime=runtime, clock=clock, max_bytes=limit
        )
        return result.status_code

    assert await accept(sample) == 202  # the first order also reads the audit head once
    statements: list[str] = []
    assert db.sqlite_writer is not None and db.sqlite_writer.driver is not None
    db.sqlite_writer.driver.set_trace_callback(statements.append)
    try:
        assert await accept(sample.replace(b"3961187420015523311", b"3961187420015523399")) == 202
    finally:
        db.sqlite_writer.driver.set_trace_callback(None)
    words = [" ".join(s.split()[:3]) for s in statements if not s.startswith(("BEGIN", "COMMIT"))]
    assert words == [
        "SAVEPOINT gateway_uow",
        "SELECT order_id, platform_version,",
        "SELECT sku, warehouse,",  # the stock levels (no count: nothing to reserve)
        "INSERT INTO raw_payloads",
        "INSERT INTO orders",
        "INSERT INTO order_bindings",
        "INSERT INTO order_timeline",
        "UPDATE audit_head SET",
        "INSERT INTO audit_log",
        "INSERT INTO outbox",
        "SELECT 1 FROM",  # refunds stored for the order (some arrive before it)
        "RELEASE gateway_uow",
    ], statements


async def test_the_writer_checkpoints_in_small_steps(db: Database):
    from adapters.db.engine import WAL_AUTOCHECKPOINT_PAGES

    async with SqlUnitOfWorkFactory(db)() as uow:
        raw = await uow.orders._session.driver()
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES < 1000
