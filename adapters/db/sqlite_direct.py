"""The statements every order runs on SQLite, as plain SQL on the single writer's stdlib connection.

An accepted order runs eight statements on the writer and a delivered one seven. Through SQLAlchemy
Core each cost about twice what SQLite itself spends (execution context, bind and result
processors); that was the largest item of an order's CPU (``docs/benchmarks.md``). The classes
here override just those methods of the Core repositories, with fixed SQL text that ``sqlite3``
prepares once and keeps in its statement cache, on the same connection and in the same savepoint
as every other statement of the unit of work (``WriterSession.driver``). Values are converted as
the column types would: times as ``UTCDateTime`` text, JSON as msgspec text. Reads, rare writes
and PostgreSQL stay on Core.
"""

from __future__ import annotations

import sqlite3
import zlib
from datetime import datetime
from typing import Any

import msgspec

from adapters.db.audit_log import SqlAuditLog, draft, seal
from adapters.db.outbox import SqlOutbox
from adapters.db.refunds import SqlRefundRepository
from adapters.db.repositories import (
    PAYLOAD_ZLIB_LEVEL,
    SqlOrderRepository,
    SqlPayloadStore,
    binding_from_row,
    conflict_on_duplicate,
    utcnow,
)
from adapters.db.sqlite_writer import WriterSession
from adapters.db.tables import sqlite_time
from gateway.audit import AuditEntry
from gateway.errors import NotFound
from gateway.ports import Binding, OrderRecord, OrderState, OutboxLease

_json = msgspec.json.encode

_FIND_BINDING = (
    "SELECT order_id, platform_version, payload_sha256, erp_target, erp_document_no"
    " FROM order_bindings WHERE platform = ? AND shop_id = ? AND platform_order_id = ?"
)
_INSERT_ORDER = (
    "INSERT INTO orders (id, platform, shop_id, platform_order_id, platform_version, state, canonical,"
    " mapping_version, rules_version, payload_sha256, erp_target, erp_document_no, erp_status, created_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BINDING = (
    "INSERT INTO order_bindings (platform, shop_id, platform_order_id, order_id, platform_version,"
    " payload_sha256, erp_target, erp_document_no, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TIMELINE = "INSERT INTO order_timeline (order_id, at, kind, detail) VALUES (?, ?, ?, ?)"
_SET_STATE = "UPDATE orders SET state = ?, updated_at = ? WHERE id = ?"
# A document number of NULL keeps the one recorded (see ``SqlOrderRepository.set_erp``).
_SET_ERP = (
    "UPDATE orders SET erp_target = ?, erp_document_no = COALESCE(?, erp_document_no), erp_status = ?,"
    " updated_at = ? WHERE id = ?"
)
_SET_ERP_BINDING = (
    "UPDATE order_bindings SET erp_target = ?, erp_document_no = COALESCE(?, erp_document_no), updated_at = ?"
    " WHERE order_id = ?"
)
_PUT_PAYLOAD = (
    "INSERT INTO raw_payloads (sha256, body, size, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (order_id, target, kind, state, attempts, token, available_at, state_data, created_at,"
    " updated_at) VALUES (?, ?, ?, 'pending', 0, 0, ?, '{}', ?, ?)"
)
_END_ATTEMPT = (
    "UPDATE outbox SET state = ?, attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL,"
    " updated_at = ?{} WHERE id = ? AND token = ? AND state = 'leased'"
)
_READ_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_SET_HEAD = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
_SET_HEAD_IF = _SET_HEAD + " AND seq = ? AND hash = ?"
_INSERT_AUDIT = (
    "INSERT INTO audit_log (seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _text(value: Any) -> str:
    return _json(value).decode()


def _update_one(raw: sqlite3.Connection, sql: str, params: tuple[Any, ...], what: str) -> None:
    if raw.execute(sql, params).rowcount == 0:
        raise NotFound(f"{what} not found", f"未找到 {what}")


class SqliteOrderRepository(SqlOrderRepository):
    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def find_binding(self, platform: str, shop_id: str, platform_order_id: str) -> Binding | None:
        raw = await self._session.driver()
        row = raw.execute(_FIND_BINDING, (platform, shop_id, platform_order_id)).fetchone()
        if row is None:
            return None
        return binding_from_row(platform, shop_id, platform_order_id, row)

    async def add(self, order: OrderRecord) -> OrderRecord:
        raw = await self._session.driver()
        created_at = order.created_at or utcnow()
        updated_at = order.updated_at or created_at
        created, updated = sqlite_time(created_at), sqlite_time(updated_at)
        with conflict_on_duplicate("this platform order (or gateway id)", "该平台订单（或网关编号）"):
            seq = raw.execute(
                _INSERT_ORDER,
                (
                    order.id,
                    order.platform,
                    order.shop_id,
                    order.platform_order_id,
                    order.platform_version,
                    order.state,
                    _text(order.canonical),
                    order.mapping_version,
                    order.rules_version,
                    order.payload_sha256,
                    order.erp_target,
                    order.erp_document_no,
                    order.erp_status,
                    created,
                    updated,
                ),
            ).lastrowid
            raw.execute(
                _INSERT_BINDING,
                (
                    order.platform,
                    order.shop_id,
                    order.platform_order_id,
                    order.id,
                    order.platform_version,
                    order.payload_sha256,
                    order.erp_target,
                    order.erp_document_no,
                    updated,
                ),
            )
        return msgspec.structs.replace(order, seq=seq, created_at=created_at, updated_at=updated_at)

    async def set_state(self, order_id: str, state: OrderState) -> None:
        raw = await self._session.driver()
        _update_one(raw, _SET_STATE, (state, sqlite_time(utcnow()), order_id), f"order {order_id}")

    async def set_erp(self, order_id: str, *, target: str, document_no: str | None, status: str) -> None:
        raw = await self._session.driver()
        now = sqlite_time(utcnow())
        _update_one(raw, _SET_ERP, (target, document_no, status, now, order_id), f"order {order_id}")
        raw.execute(_SET_ERP_BINDING, (target, document_no, now, order_id))

    async def add_timeline(self, order_id: str, kind: str, detail: dict[str, Any]) -> None:
        raw = await self._session.driver()
        raw.execute(_INSERT_TIMELINE, (order_id, sqlite_time(utcnow()), kind, _text(detail)))


class SqlitePayloadStore(SqlPayloadStore):
    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def put(self, sha256: str, raw_body: bytes) -> None:
        raw = await self._session.driver()
        body = zlib.compress(raw_body, PAYLOAD_ZLIB_LEVEL)
        raw.execute(_PUT_PAYLOAD, (sha256, body, len(raw_body), sqlite_time(utcnow())))


class SqliteOutbox(SqlOutbox):
    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def add(self, *, order_id: str, target: str, kind: str, available_at: datetime) -> int:
        raw = await self._session.driver()
        due, now = sqlite_time(available_at), sqlite_time(utcnow())
        return raw.execute(_INSERT_OUTBOX, (order_id, target, kind, due, now, now)).lastrowid  # type: ignore[return-value]

    async def _end_attempt(self, lease: OutboxLease, state: str, now: datetime, **values: Any) -> bool:
        raw = await self._session.driver()
        names = sorted(values)
        sql = _END_ATTEMPT.format("".join(f", {name} = ?" for name in names))
        converted = [_column_value(name, values[name]) for name in names]
        return raw.execute(sql, (state, sqlite_time(now), *converted, lease.id, lease.token)).rowcount == 1


def _column_value(name: str, value: Any) -> Any:
    if name == "state_data":
        return _text(value)
    return sqlite_time(value) if isinstance(value, datetime) else value


class SqliteAuditLog(SqlAuditLog):
    """Two statements per entry instead of three: the head this process last wrote is kept on the
    writer, and the head row is moved on only if it still holds exactly that ``(seq, hash)``.
    When it does not (another process, the CLI say, appended since; or a transaction that wrote
    the remembered head rolled back) the head is read and the entry sealed again. The file's write
    lock (BEGIN IMMEDIATE) is held meanwhile, so the chain stays one sequence without gaps."""

    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> AuditEntry:
        raw = await self._session.driver()
        writer = self._session.writer
        d = draft(actor=actor, action=action, subject_type=subject_type, subject_id=subject_id, data=data)
        entry: AuditEntry | None = None
        if (head := writer.audit_head) is not None:
            entry = seal(d, *head)
            if raw.execute(_SET_HEAD_IF, (entry.seq, entry.hash, *head)).rowcount != 1:
                entry = None
        if entry is None:
            entry = seal(d, *raw.execute(_READ_HEAD).fetchone())
            raw.execute(_SET_HEAD, (entry.seq, entry.hash))
        raw.execute(
            _INSERT_AUDIT,
            (entry.seq, d.at, actor, action, subject_type, subject_id, d.data_text, entry.prev_hash, entry.hash),
        )
        writer.audit_head = (entry.seq, entry.hash)
        return entry


_REFUND_STORED = "SELECT 1 FROM refunds WHERE platform = ? AND platform_order_id = ? LIMIT 1"


class SqliteRefundRepository(SqlRefundRepository):
    """The writer's refunds: SQLite runs one writer at a time, so what this transaction sees of the
    refunds table stays true until it commits."""

    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def stored_for_order(self, platform: str, platform_order_id: str) -> bool | None:
        raw = await self._session.driver()
        return raw.execute(_REFUND_STORED, (platform, platform_order_id)).fetchone() is not None
