"""The audit chain on fake, SQLite and PostgreSQL: one sequence from concurrent writers, tampering
and deletion detected, entries roll back with their transaction."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.db.engine import Database, create_engine
from adapters.db.uow import SqlUnitOfWorkFactory

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- audit


async def append(factory: Any, n: int) -> None:
    async with factory() as uow:
        await uow.audit.append(
            actor=f"task-{n % 8}",
            action="order.accepted",
            subject_type="order",
            subject_id=f"o{n}",
            data={"n": n},
        )
        await uow.commit()


async def read_audit(storage: Any) -> list[Any]:
    async with storage.uow(write=False) as uow:
        first = await uow.audit.list(after_seq=0, limit=30)
        rest = await uow.audit.list(after_seq=30, limit=100)
    return [*first, *rest]


async def test_audit_chain_from_concurrent_writers(storage):
    async def task(k: int) -> None:
        for n in range(k, 50, 8):
            await append(storage.uow, n)

    await asyncio.gather(*(task(k) for k in range(8)))
    entries = await read_audit(storage)
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.checked, check.broken_at) == (True, 50, None)
    assert [e.seq for e in entries] == list(range(1, 51))
    assert sorted(e.data["n"] for e in entries) == list(range(50))
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert datetime.fromisoformat(entries[0].at).utcoffset() == timedelta(0)


async def test_audit_chain_from_several_engines(storage):
    """Several engines stand for several processes (on SQLite they meet at the file lock)."""
    if storage.db is None:
        pytest.skip("the fake lives in one process")
    dbs = [create_engine(storage.url) for _ in range(3)]
    factories = [SqlUnitOfWorkFactory(db) for db in dbs]
    try:

        async def task(k: int) -> None:
            for n in range(k, 50, 8):
                await append(factories[n % 3], n)

        await asyncio.gather(*(task(k) for k in range(8)))
    finally:
        for db in dbs:
            await db.dispose()
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.checked) == (True, 50)
    assert [e.seq for e in await read_audit(storage)] == list(range(1, 51))


async def _drop_audit_triggers(db: Database) -> None:
    on = " ON audit_log" if db.dialect == "postgresql" else ""
    async with db.engine.begin() as conn:
        for name in ("audit_log_no_update", "audit_log_no_delete"):
            await conn.execute(text(f"DROP TRIGGER {name}{on}"))


async def tamper_data(storage: Any, seq: int, data: dict[str, Any]) -> None:
    if storage.db is None:
        storage.uow.state.audit[seq - 1].data = data
        return
    async with storage.db.engine.connect() as conn:  # the triggers refuse first
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("UPDATE audit_log SET data = '{}' WHERE seq = 1"))
    await _drop_audit_triggers(storage.db)
    async with storage.db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_log SET data = :d WHERE seq = :s"), {"d": json.dumps(data), "s": seq})


async def delete_last(storage: Any) -> None:
    if storage.db is None:
        storage.uow.state.audit.pop()
        return
    async with storage.db.engine.connect() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("DELETE FROM audit_log"))
    await _drop_audit_triggers(storage.db)
    async with storage.db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"))


async def test_audit_verify_names_a_tampered_entry(storage):
    for n in range(50):
        await append(storage.uow, n)
    await tamper_data(storage, 17, {"n": 999})
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.broken_at, check.checked) == (False, 17, 16)
    assert check.reason == "entry altered"


async def test_audit_verify_notices_the_last_entry_deleted(storage):
    for n in range(50):
        await append(storage.uow, n)
    await delete_last(storage)
    async with storage.uow(write=False) as uow:
        check = await uow.audit.verify()
    assert (check.ok, check.broken_at, check.checked) == (False, 50, 49)


async def test_audit_entry_rolls_back_with_its_transaction(storage):
    async with storage.uow() as uow:
        await uow.audit.append(actor="a", action="x", subject_type="order", subject_id="o1", data={})
        # no commit
    async with storage.uow() as uow:
        await uow.audit.append(actor="a", action="x", subject_type="order", subject_id="o2", data={})
        await uow.rollback()
    async with storage.uow(write=False) as uow:
        assert await uow.audit.list(after_seq=0, limit=10) == []
        assert (await uow.audit.verify()).checked == 0
    async with storage.uow() as uow:
        entry = await uow.audit.append(
            actor="a", action="x", subject_type="order", subject_id="o3", data={"amount": (1, "9.90")}
        )
        await uow.commit()
    assert entry.seq == 1 and entry.data == {"amount": [1, "9.90"]}
    async with storage.uow(write=False) as uow:
        assert list(await uow.audit.list(after_seq=0, limit=10)) == [entry]
        assert (await uow.audit.verify()).ok
