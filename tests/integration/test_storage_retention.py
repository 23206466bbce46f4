"""The retention purge on fake, SQLite and PostgreSQL: payloads past the period go, oldest first and
in batches; orders, intercepts and the audit chain (whose entries hash the payloads' hashes) stay,
and the run is one audit entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.db.tables import raw_payloads
from gateway.retention import purge_payloads
from tests.support.storage import add_orders, make_order

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
AGES = {1: 400, 2: 200, 3: 181, 4: 179, 5: 1}  # payload n → days since it was received


def body(n: int) -> bytes:
    return (f'{{"tid": "TB{n}", "lines": [' + ",".join(['{"sku": "A-1"}'] * n) + "]}").encode()


async def backdate(storage: Any, sha: str, when: datetime) -> None:
    if storage.db is None:
        storage.uow.state.payload_received[sha] = when
        return
    async with storage.db.engine.begin() as conn:
        await conn.execute(raw_payloads.update().where(raw_payloads.c.sha256 == sha).values(received_at=when))


async def stored(storage: Any) -> set[str]:
    found = set()
    async with storage.uow(write=False) as uow:
        for n in AGES:
            if await uow.payloads.get(f"{n:064x}") is not None:
                found.add(f"{n:064x}")
    return found


async def test_purge_deletes_old_payloads_only_and_keeps_the_records(storage):
    orders = await add_orders(storage, *(make_order(n) for n in AGES))
    async with storage.uow() as uow:
        for n in AGES:
            await uow.payloads.put(f"{n:064x}", body(n))
            await uow.audit.append(
                actor="gateway",
                action="order.accepted",
                subject_type="order",
                subject_id=f"01ORDER{n:06d}",
                data={"payload_sha256": f"{n:064x}"},
            )
        await uow.commit()
    for n, days in AGES.items():
        await backdate(storage, f"{n:064x}", NOW - timedelta(days=days))

    dry = await purge_payloads(storage.uow, days=180, now=NOW, actor="ops", dry_run=True)
    assert (dry.dry_run, dry.payloads, dry.bytes, dry.audit_seq) == (
        True,
        3,
        sum(len(body(n)) for n in (1, 2, 3)),
        None,
    )
    assert datetime.fromisoformat(dry.oldest_received_at) == (NOW - timedelta(days=400))
    assert len(await stored(storage)) == 5

    seen: list[tuple[int, int]] = []
    report = await purge_payloads(
        storage.uow, days=180, now=NOW, actor="ops (cli)", batch=2, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.payloads, report.batches, report.completed) == (3, 2, True)
    assert report.bytes == dry.bytes and report.cutoff == (NOW - timedelta(days=180)).isoformat()
    assert seen == [(2, 3), (3, 3)]
    assert await stored(storage) == {f"{n:064x}" for n in (4, 5)}

    async with storage.uow(write=False) as uow:
        assert [await uow.orders.get(o.id) is not None for o in orders] == [True] * 5
        check = await uow.audit.verify()
        entries = await uow.audit.list(after_seq=0, limit=100)
    assert check.ok and check.checked == 6
    last = entries[-1]
    assert (last.seq, last.action, last.actor, last.subject_type) == (
        report.audit_seq,
        "retention.purged",
        "ops (cli)",
        "retention",
    )
    assert last.data == {
        "payload_days": 180,
        "cutoff": report.cutoff,
        "payloads": 3,
        "bytes": report.bytes,
        "oldest_received_at": dry.oldest_received_at,
        "batches": 2,
        "completed": True,
    }
    # the entries that hash a purged payload's hash are unchanged
    assert entries[0].data == {"payload_sha256": f"{1:064x}"}

    # nothing left to purge: a run that deletes nothing is recorded too; a payload received again
    # after its purge is stored again
    again = await purge_payloads(storage.uow, days=180, now=NOW, actor="ops", batch=2)
    assert (again.payloads, again.batches, again.audit_seq) == (0, 1, 7)
    async with storage.uow() as uow:
        await uow.payloads.put(f"{1:064x}", body(1))
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert await uow.payloads.get(f"{1:064x}") == body(1)
        assert (await uow.audit.verify()).ok
