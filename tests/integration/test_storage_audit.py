"""The audit chain on fake, SQLite and PostgreSQL: one sequence from concurrent writers (tasks,
engines, and two processes), tampering and deletion detected, entries roll back with their
transaction, and an anchor exposes a chain rewritten so that it verifies on its own."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from adapters.db.engine import Database, create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.audit import GENESIS_HASH, Anchor, AuditEntry, ChainCheck, entry_hash, head_anchor, verify_log

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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


async def test_audit_chain_from_two_processes_of_four_writers(database_url):
    """Eight writers in two processes (four asyncio tasks on one engine each) append to one chain
    at the same time: one sequence, no fork, no gap, every entry once."""
    writers, entries = 4, 40
    start_at = time.time() + 1.5  # both processes connected before either writes
    args = [database_url, "", str(writers), str(entries), str(start_at)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.audit_writers",
            *[str(p) if i == 1 else a for i, a in enumerate(args)],
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for p in range(2)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
    db = create_engine(database_url)
    try:
        async with SqlUnitOfWorkFactory(db)(write=False) as uow:
            check = await uow.audit.verify()
            chain = [e for start in range(0, 320, 100) for e in await uow.audit.list(after_seq=start, limit=100)]
    finally:
        await db.dispose()
    total = 2 * writers * entries
    assert (check.ok, check.checked) == (True, total)
    assert [e.seq for e in chain] == list(range(1, total + 1))  # no gap
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))  # no fork
    written = sorted((e.data["process"], e.data["writer"], e.data["n"]) for e in chain)
    assert written == [(p, w, n) for p in range(2) for w in range(writers) for n in range(entries)]
    if database_url.startswith("postgresql"):
        # the processes really raced: their entries interleave (SQLite's file lock may well let
        # one process's writer finish before the other's gets a turn)
        by = [e.data["process"] for e in chain]
        assert sum(1 for a, b in zip(by, by[1:], strict=False) if a != b) > 2


# --------------------------------------------------------------------------- anchors


async def _chain(storage: Any) -> list[Any]:
    async with storage.uow(write=False) as uow:
        return list(await uow.audit.list(after_seq=0, limit=1000))


async def rewrite_from(storage: Any, seq: int) -> None:
    """What an attacker with write access does: change entry ``seq`` and re-hash it and every
    later entry, and the head, so that the chain verifies on its own."""
    entries = await _chain(storage)
    prev = entries[seq - 2].hash if seq > 1 else GENESIS_HASH
    forged = []
    for e in entries[seq - 1 :]:
        data = {**e.data, "n": -1} if e.seq == seq else e.data
        fields = {**msgspec.structs.asdict(e), "data": data, "prev_hash": prev}
        del fields["hash"]
        forged.append(AuditEntry(**fields, hash=entry_hash(**fields)))
        prev = forged[-1].hash
    if storage.db is None:
        storage.uow.state.audit[seq - 1 :] = forged
        storage.uow.state.audit_head = (forged[-1].seq, forged[-1].hash)
        return
    await _drop_audit_triggers(storage.db)
    async with storage.db.engine.begin() as conn:
        for e in forged:
            await conn.execute(
                text("UPDATE audit_log SET data = :d, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"d": json.dumps(e.data), "p": e.prev_hash, "h": e.hash, "s": e.seq},
            )
        await conn.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})


async def test_an_anchor_proves_the_chain_up_to_it(storage):
    async with storage.uow(write=False) as uow:
        assert await head_anchor(uow.audit) == (ChainCheck(ok=True, checked=0), None)
    for n in range(10):
        await append(storage.uow, n)
    async with storage.uow(write=False) as uow:
        check, anchor = await head_anchor(uow.audit)
    chain = await _chain(storage)
    assert check.ok and anchor == Anchor(seq=10, hash=chain[-1].hash, at=chain[-1].at)
    for n in range(10, 15):  # the chain grows after the anchor
        await append(storage.uow, n)
    async with storage.uow(write=False) as uow:
        assert await verify_log(uow.audit, anchor) == ChainCheck(ok=True, checked=15, anchor_matches=True)
        ahead = await verify_log(uow.audit, Anchor(seq=20, hash=anchor.hash))
    assert (ahead.ok, ahead.broken_at) == (False, 20)

    await rewrite_from(storage, 4)
    async with storage.uow(write=False) as uow:
        assert (await uow.audit.verify()).ok  # the rewritten chain verifies on its own …
        check = await verify_log(uow.audit, anchor)
    assert (check.ok, check.broken_at, check.anchor_matches) == (False, 10, False)  # … not against the anchor

    # and an entry before the anchor altered (the triggers are gone already): the walk names it
    if storage.db is None:
        storage.uow.state.audit[2].data = {"n": 999}
    else:
        async with storage.db.engine.begin() as conn:
            await conn.execute(text("UPDATE audit_log SET data = '{\"n\": 999}' WHERE seq = 3"))
    async with storage.uow(write=False) as uow:
        check = await verify_log(uow.audit, anchor)
    assert (check.ok, check.broken_at, check.checked, check.anchor_matches) == (False, 3, 2, False)
