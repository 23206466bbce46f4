"""The audit log: an append-only, hash-chained table (the chain rules live in ``gateway.audit``).

``audit_head`` holds the last sequence number and hash. Appending locks that one row (PostgreSQL
``FOR UPDATE``; on SQLite the writer lock already serialises), so concurrent writers form one
chain without forks or gaps, and an entry rolled back with its transaction leaves no hole.
Triggers from the migrations refuse UPDATE and DELETE on ``audit_log``. The head also lets
``verify`` notice entries cut from the end, which a chain alone cannot show.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import Row, bindparam, select, text

from adapters.db.engine import Executor
from adapters.db.tables import audit_head, audit_log
from gateway.audit import GENESIS_HASH, AuditEntry, ChainCheck, entry_hash, verify_chain

VERIFY_BATCH = 1000

_encoder = msgspec.json.Encoder(order="sorted")

_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_SET_HEAD = audit_head.update().where(audit_head.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
_INSERT = audit_log.insert()
# PostgreSQL: the entry and the head's move in one statement, so the head row, locked from the
# SELECT … FOR UPDATE to the COMMIT, waits for one round trip fewer (every other writer waits too).
_INSERT_AND_SET_HEAD = text(
    "WITH head AS (UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1)"
    " INSERT INTO audit_log (seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash)"
    " VALUES (:seq, :at, :actor, :action, :subject_type, :subject_id, :data, :prev_hash, :hash)"
)
_AFTER = (
    select(audit_log)
    .where(audit_log.c.seq > bindparam("after_seq"))
    .order_by(audit_log.c.seq)
    .limit(bindparam("limit"))
)


def _entry(row: Row[Any]) -> AuditEntry:
    try:
        data = msgspec.json.decode(row.data)
    except msgspec.DecodeError:
        data = {"undecodable": row.data}  # tampered text: shown as is, and its hash will not match
    return AuditEntry(**{**row._mapping, "data": data})


class Draft(NamedTuple):
    """An entry before it has a place in the chain (``seal`` gives it one)."""

    at: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]  # as it will be read back, which is what the hash covers
    data_text: str  # as stored


def draft(*, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]) -> Draft:
    data_text = _encoder.encode(data).decode()
    # Hash what will be read back: JSON turns tuples, Decimals and int keys into other shapes.
    at = datetime.now(UTC).isoformat()
    return Draft(at, actor, action, subject_type, subject_id, msgspec.json.decode(data_text), data_text)


def seal(d: Draft, head_seq: int, head_hash: str) -> AuditEntry:
    """``d`` as the entry after the head ``(head_seq, head_hash)``."""
    fields = {
        "seq": head_seq + 1,
        "at": d.at,
        "actor": d.actor,
        "action": d.action,
        "subject_type": d.subject_type,
        "subject_id": d.subject_id,
        "data": d.data,
        "prev_hash": head_hash,
    }
    return AuditEntry(**fields, hash=entry_hash(**fields))


class SqlAuditLog:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> AuditEntry:
        d = draft(actor=actor, action=action, subject_type=subject_type, subject_id=subject_id, data=data)
        head = (await self._conn.execute(_HEAD_LOCKED)).one()
        entry = seal(d, head.seq, head.hash)
        row = msgspec.structs.asdict(entry) | {"data": d.data_text}
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(_INSERT_AND_SET_HEAD, row)
            return entry
        await self._conn.execute(_INSERT, row)
        await self._conn.execute(_SET_HEAD, {"new_seq": entry.seq, "new_hash": entry.hash})
        return entry

    async def list(self, *, after_seq: int, limit: int) -> Sequence[AuditEntry]:
        rows = await self._conn.execute(_AFTER, {"after_seq": after_seq, "limit": limit})
        return [_entry(row) for row in rows]

    async def verify(self) -> ChainCheck:
        """Walk the whole chain in batches, then check that it ends where the head says.

        Under READ COMMITTED entries may be appended while we walk; they commit together with the
        head, so a head ahead of the walk is first taken as new entries to read, and only when
        none remain as entries missing from the end.
        """
        prev_hash, checked = GENESIS_HASH, 0
        while True:
            batch = await self.list(after_seq=checked, limit=VERIFY_BATCH)
            if batch:
                result = verify_chain(batch, start_prev_hash=prev_hash, start_seq=checked + 1)
                if not result.ok:
                    return ChainCheck(
                        ok=False,
                        checked=checked + result.checked,
                        broken_at=result.broken_at,
                        reason=result.reason,
                    )
                checked += len(batch)
                prev_hash = batch[-1].hash
            if len(batch) == VERIFY_BATCH:
                continue
            head = (await self._conn.execute(_HEAD)).one()
            if head.seq > checked:
                if await self.list(after_seq=checked, limit=1):
                    continue
                return ChainCheck(ok=False, checked=checked, broken_at=checked + 1, reason="entries missing at the end")
            if head.seq < checked:
                return ChainCheck(
                    ok=False, checked=checked, broken_at=head.seq + 1, reason="entries beyond the chain head"
                )
            if head.hash != prev_hash:
                return ChainCheck(
                    ok=False,
                    checked=checked,
                    broken_at=checked,
                    reason="chain head does not match the last entry",
                )
            return ChainCheck(ok=True, checked=checked)
