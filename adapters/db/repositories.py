"""The storage ports on SQLAlchemy Core: orders and their binder, payloads, intercepts, dead letters,
API keys and refunds. The outbox and the audit chain, which carry concurrency rules, have modules
of their own (``outbox.py``, ``audit_log.py``).

Every repository works on the unit of work's connection (``engine.Executor``); nothing here
commits. Statements that run per order are built once at import, so SQLAlchemy's compiled cache
serves them.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, Table, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from adapters.db.engine import Executor
from adapters.db.paging import decode_cursor, page_of
from adapters.db.tables import (
    api_keys,
    dead_letters,
    order_bindings,
    order_timeline,
    orders,
    raw_payloads,
)
from gateway.errors import Conflict, NotFound
from gateway.ports import (
    ApiKeyRecord,
    Binding,
    DeadLetter,
    OrderRecord,
    OrderState,
    Page,
    PayloadAges,
    TimelineEntry,
)

_BINDING_COLUMNS = [
    order_bindings.c.order_id,
    order_bindings.c.platform,
    order_bindings.c.shop_id,
    order_bindings.c.platform_order_id,
    order_bindings.c.platform_version,
    order_bindings.c.payload_sha256,
    order_bindings.c.erp_target,
    order_bindings.c.erp_document_no,
]
_FIND_BINDING = select(*_BINDING_COLUMNS).where(
    order_bindings.c.platform == bindparam("platform"),
    order_bindings.c.shop_id == bindparam("shop_id"),
    order_bindings.c.platform_order_id == bindparam("platform_order_id"),
)
_INSERT_ORDER = orders.insert().returning(orders.c.seq)
_INSERT_BINDING = order_bindings.insert()
_GET_ORDER = select(orders).where(orders.c.id == bindparam("order_id"))
_INSERT_TIMELINE = order_timeline.insert()
_PUT_PAYLOAD = {
    "postgresql": postgresql.insert(raw_payloads).on_conflict_do_nothing(index_elements=["sha256"]),
    "sqlite": sqlite.insert(raw_payloads).on_conflict_do_nothing(index_elements=["sha256"]),
}


PAYLOAD_ZLIB_LEVEL = 1  # a 3 KB order: level 6 is 7% smaller and a third slower


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def conflict_on_duplicate(what_en: str, what_zh: str) -> Iterator[None]:
    """A unique key already taken is a ``Conflict``: the caller raced another writer or repeats
    itself. The transaction may be unusable afterwards (PostgreSQL): leave the unit of work."""
    try:
        yield
    except (IntegrityError, sqlite3.IntegrityError) as exc:  # the latter from ``sqlite_direct``
        raise Conflict(f"{what_en} is already stored", f"{what_zh}已存在") from exc


async def _update_one(conn: Executor, stmt: Any, what: str) -> None:
    """Run an UPDATE of one row; a missing row is a caller's mistake worth a clear error."""
    if (await conn.execute(stmt)).rowcount == 0:
        raise NotFound(f"{what} not found", f"未找到 {what}")


def binding_from_row(platform: str, shop_id: str, platform_order_id: str, row: Any) -> Binding:
    """A binding from a raw driver row of ``(order_id, platform_version, payload_sha256,
    erp_target, erp_document_no)``, as the hand-written look-ups of intake select it."""
    order_id, version, sha, target, document_no = row
    return Binding(
        order_id=order_id,
        platform=platform,
        shop_id=shop_id,
        platform_order_id=platform_order_id,
        platform_version=version,
        payload_sha256=sha,
        erp_target=target,
        erp_document_no=document_no,
    )


class SqlOrderRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def find_binding(self, platform: str, shop_id: str, platform_order_id: str) -> Binding | None:
        row = (
            await self._conn.execute(
                _FIND_BINDING,
                {"platform": platform, "shop_id": shop_id, "platform_order_id": platform_order_id},
            )
        ).first()
        return None if row is None else Binding(**row._mapping)

    async def add(self, order: OrderRecord) -> OrderRecord:
        now = utcnow()
        created_at = order.created_at or now
        updated_at = order.updated_at or created_at
        values = {
            "id": order.id,
            "platform": order.platform,
            "shop_id": order.shop_id,
            "platform_order_id": order.platform_order_id,
            "platform_version": order.platform_version,
            "state": order.state,
            "canonical": order.canonical,
            "mapping_version": order.mapping_version,
            "rules_version": order.rules_version,
            "payload_sha256": order.payload_sha256,
            "erp_target": order.erp_target,
            "erp_document_no": order.erp_document_no,
            "erp_status": order.erp_status,
            "created_at": created_at,
            "updated_at": updated_at,
        }
        with conflict_on_duplicate("this platform order (or gateway id)", "该平台订单（或网关编号）"):
            seq = (await self._conn.execute(_INSERT_ORDER, values)).scalar_one()
            await self._conn.execute(
                _INSERT_BINDING,
                {
                    "platform": order.platform,
                    "shop_id": order.shop_id,
                    "platform_order_id": order.platform_order_id,
                    "order_id": order.id,
                    "platform_version": order.platform_version,
                    "payload_sha256": order.payload_sha256,
                    "erp_target": order.erp_target,
                    "erp_document_no": order.erp_document_no,
                    "updated_at": updated_at,
                },
            )
        return OrderRecord(**{**values, "seq": seq})

    async def get(self, order_id: str) -> OrderRecord | None:
        row = (await self._conn.execute(_GET_ORDER, {"order_id": order_id})).first()
        return None if row is None else OrderRecord(**row._mapping)

    async def list(
        self, *, platform: str | None, platform_order_id: str | None, cursor: str | None, limit: int
    ) -> Page:
        """Newest first."""
        stmt = select(orders).order_by(orders.c.seq.desc()).limit(limit + 1)
        if platform is not None:
            stmt = stmt.where(orders.c.platform == platform)
        if platform_order_id is not None:
            stmt = stmt.where(orders.c.platform_order_id == platform_order_id)
        if (after := decode_cursor(cursor)) is not None:
            stmt = stmt.where(orders.c.seq < after)
        return page_of((await self._conn.execute(stmt)).all(), limit, lambda row: OrderRecord(**row._mapping))

    async def replace_canonical(
        self,
        order_id: str,
        *,
        canonical: dict[str, Any],
        platform_version: str | None,
        payload_sha256: str,
        mapping_version: str | None = None,
        rules_version: str | None = None,
    ) -> None:
        now = utcnow()
        versions = {"mapping_version": mapping_version, "rules_version": rules_version}
        await _update_one(
            self._conn,
            orders.update()
            .where(orders.c.id == order_id)
            .values(
                canonical=canonical,
                platform_version=platform_version,
                payload_sha256=payload_sha256,
                updated_at=now,
                **{k: v for k, v in versions.items() if v is not None},
            ),
            f"order {order_id}",
        )
        await self._conn.execute(
            order_bindings.update()
            .where(order_bindings.c.order_id == order_id)
            .values(platform_version=platform_version, payload_sha256=payload_sha256, updated_at=now)
        )

    async def set_state(self, order_id: str, state: OrderState) -> None:
        await _update_one(
            self._conn,
            orders.update().where(orders.c.id == order_id).values(state=state, updated_at=utcnow()),
            f"order {order_id}",
        )

    async def set_state_if(self, order_id: str, *, expect: OrderState, state: OrderState) -> bool:
        """One conditional UPDATE: on PostgreSQL a second transaction waits for the first's row lock
        and then finds the state moved on (0 rows); SQLite runs one writer at a time."""
        stmt = (
            orders.update()
            .where(orders.c.id == order_id, orders.c.state == expect)
            .values(state=state, updated_at=utcnow())
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def require_state(self, order_id: str, *, expect: OrderState, state: OrderState) -> None:
        """``set_state_if`` that raises ``Conflict`` when the order moved on: how a grouped unit of
        work of intake (``pg_group``) replays it, so that the whole unit is rolled back."""
        if not await self.set_state_if(order_id, expect=expect, state=state):
            raise Conflict(
                f"order {order_id} is no longer {expect}: it changed since it was read",
                f"订单 {order_id} 已不处于 {expect} 状态（读取后已被修改）",
            )

    async def set_erp(self, order_id: str, *, target: str, document_no: str | None, status: str) -> None:
        """A ``document_no`` of None keeps the number already recorded (a later failure must not
        erase the proof that the ERP holds the document)."""
        now = utcnow()
        await _update_one(
            self._conn,
            orders.update()
            .where(orders.c.id == order_id)
            .values(
                erp_target=target,
                erp_document_no=func.coalesce(literal(document_no, String()), orders.c.erp_document_no),
                erp_status=status,
                updated_at=now,
            ),
            f"order {order_id}",
        )
        await self._conn.execute(
            order_bindings.update()
            .where(order_bindings.c.order_id == order_id)
            .values(
                erp_target=target,
                erp_document_no=func.coalesce(literal(document_no, String()), order_bindings.c.erp_document_no),
                updated_at=now,
            )
        )

    async def add_timeline(self, order_id: str, kind: str, detail: dict[str, Any]) -> None:
        await self._conn.execute(
            _INSERT_TIMELINE, {"order_id": order_id, "at": utcnow(), "kind": kind, "detail": detail}
        )

    async def timeline(self, order_id: str) -> list[TimelineEntry]:
        t = order_timeline
        rows = await self._conn.execute(
            select(t.c.at, t.c.kind, t.c.detail).where(t.c.order_id == order_id).order_by(t.c.id)
        )
        return [TimelineEntry(at=r.at, kind=r.kind, detail=r.detail) for r in rows]


class SqlPayloadStore:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn
        self._put = _PUT_PAYLOAD[conn.dialect.name]

    async def put(self, sha256: str, raw: bytes) -> None:
        body = zlib.compress(raw, PAYLOAD_ZLIB_LEVEL)
        await self._conn.execute(self._put, {"sha256": sha256, "body": body, "size": len(raw), "received_at": utcnow()})

    async def get(self, sha256: str) -> bytes | None:
        body = (
            await self._conn.execute(select(raw_payloads.c.body).where(raw_payloads.c.sha256 == sha256))
        ).scalar_one_or_none()
        return None if body is None else zlib.decompress(body)

    async def received_before(self, cutoff: datetime) -> PayloadAges:
        p = raw_payloads
        row = (
            await self._conn.execute(
                select(func.count(), func.coalesce(func.sum(p.c.size), 0), func.min(p.c.received_at)).where(
                    p.c.received_at < cutoff
                )
            )
        ).one()
        return PayloadAges(count=row[0], bytes=int(row[1]), oldest=row[2])

    async def purge_before(self, cutoff: datetime, *, limit: int) -> tuple[int, int]:
        # The oldest first, through ix_raw_payloads_received_at: each batch reads what it deletes.
        p = raw_payloads
        batch = select(p.c.sha256).where(p.c.received_at < cutoff).order_by(p.c.received_at).limit(limit)
        sizes = (await self._conn.execute(p.delete().where(p.c.sha256.in_(batch)).returning(p.c.size))).scalars().all()
        return len(sizes), sum(sizes)


class SqlDeadLetterRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(self, letter: DeadLetter) -> None:
        await insert_record(self._conn, dead_letters, letter, f"dead letter {letter.id}", f"死信 {letter.id}")

    async def get(self, letter_id: str) -> DeadLetter | None:
        row = (await self._conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id))).first()
        return None if row is None else DeadLetter(**without_key(row._mapping, "seq"))

    async def list(self, *, cursor: str | None, limit: int, include_replayed: bool) -> Page:
        """Newest first."""
        d = dead_letters
        stmt = select(d).order_by(d.c.seq.desc()).limit(limit + 1)
        if not include_replayed:
            stmt = stmt.where(d.c.replayed_at.is_(None))
        if (after := decode_cursor(cursor)) is not None:
            stmt = stmt.where(d.c.seq < after)
        rows = (await self._conn.execute(stmt)).all()
        return page_of(rows, limit, lambda row: DeadLetter(**without_key(row._mapping, "seq")))

    async def mark_replayed(self, letter_id: str, *, now: datetime) -> None:
        await _update_one(
            self._conn,
            dead_letters.update().where(dead_letters.c.id == letter_id).values(replayed_at=now),
            f"dead letter {letter_id}",
        )


class SqlApiKeyRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(self, record: ApiKeyRecord) -> None:
        await insert_record(self._conn, api_keys, record, "this API key", "该 API 密钥")

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """Revoked keys are returned too; the caller checks ``revoked_at``."""
        row = (await self._conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return None if row is None else ApiKeyRecord(**row._mapping)


async def insert_record(
    conn: Executor, table: Table, record: Any, what_en: str, what_zh: str, *, skip: tuple[str, ...] = ()
) -> None:
    """Insert a record whose fields (but ``skip``) are columns of ``table``, stamping ``created_at``
    if unset."""
    values = {name: getattr(record, name) for name in record.__struct_fields__ if name not in skip}
    values["created_at"] = values["created_at"] or utcnow()
    with conflict_on_duplicate(what_en, what_zh):
        await conn.execute(table.insert(), values)


def without_key(mapping: Any, key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}
