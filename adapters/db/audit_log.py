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
from typing import Any

import msgspec
from sqlalchemy import Row, bindparam, select

from adapters.db.engine import Executor
from adapters.db.tables import audit_head, audit_log
from gateway.audit import GENESIS_HASH, AuditEntry, ChainCheck, entry_hash, verify_chain

VERIFY_BATCH = 1000

_encoder = msgspec.json.Encoder(order="sorted")

_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_SET_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_INSERT = audit_log.insert()
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


class SqlAuditLog:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> AuditEntry:
        head = (await self._conn.execute(_HEAD_LOCKED)).one()
        data_text = _encoder.encode(data).decode()
        fields = {
            "seq": head.seq + 1,
            "at": datetime.now(UTC).isoformat(),
            "actor": actor,
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            # Hash what will be read back: JSON turns tuples, Decimals and int keys into other shapes.
            "data": msgspec.json.decode(data_text),
            "prev_hash": head.hash,
        }
        entry = AuditEntry(**fields, hash=entry_hash(**fields))
        await self._conn.execute(_INSERT, {**fields, "data": data_text, "hash": entry.hash})
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
                return ChainCheck(
                    ok=False, checked=checked, broken_at=checked + 1, reason="entries missing at the end"
                )
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
