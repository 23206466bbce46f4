"""``gateway.ports.DictionaryVersions`` on SQLAlchemy Core: dictionary versions, the publication
generation, and the recorded payloads and orders a dry run reads.

Governance writes are rare and must not interleave (two publishes of one name, two seedings at
start): each begins with ``lock()``, which holds the single ``dictionary_publication`` row
(``FOR UPDATE`` on PostgreSQL; on SQLite the writer's BEGIN IMMEDIATE already serialises).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, null, select

from adapters.db.engine import Executor
from adapters.db.tables import (
    dictionary_publication,
    dictionary_versions,
    intercepts,
    orders,
    raw_payloads,
    refunds,
)
from gateway.ports import DictionaryState, DictionaryVersion, OrderRecord, RecordedOrder, RecordedPayload

dv = dictionary_versions
_LISTED = [c for c in dv.c if c.name not in ("text", "dry_run")]
_GENERATION = select(dictionary_publication.c.generation).where(dictionary_publication.c.id == 1)


class _Hit(NamedTuple):
    source: str
    ref: str
    platform_order_id: str | None
    shop_id: str | None
    sha: str
    at: datetime


class _Source(NamedTuple):
    name: str
    stmt: Any  # selects the _Hit fields after ``source``, newest first


def _newest(table: Any, ref: Any, shop: Any, at: Any, *where: Any) -> Any:
    return (
        select(ref, table.c.platform_order_id, shop, table.c.payload_sha256, at)
        .where(table.c.platform == bindparam("platform"), *where)
        .order_by(table.c.seq.desc())
        .limit(bindparam("limit"))
    )


_ORDERS = _Source("order", _newest(orders, orders.c.id, orders.c.shop_id, orders.c.updated_at))
# Rejected orders only: a held one is stored as an order, read above.
_i = intercepts.c
_INTERCEPTS = _Source("intercept", _newest(intercepts, _i.id, _i.shop_id, _i.created_at, _i.order_id.is_(None)))
_REFUNDS = _Source("refund", _newest(refunds, refunds.c.refund_id, null(), refunds.c.updated_at))

# A rule set's dry run: every platform's newest orders (the stored canonical order) and rejected
# orders' intercepts (the masked snapshot); a held order is read as an order.
_o = orders.c
_VERDICT_ORDERS = (
    select(_o.id, _o.platform, _o.shop_id, _o.platform_order_id, _o.canonical, _o.rules_version, _o.state)
    .add_columns(_o.updated_at)
    .order_by(_o.seq.desc())
    .limit(bindparam("limit"))
)
_VERDICT_INTERCEPTS = (
    select(_i.id, _i.platform, _i.shop_id, _i.platform_order_id, _i.snapshot, _i.rules_version, _i.created_at)
    .where(_i.order_id.is_(None))
    .order_by(_i.seq.desc())
    .limit(bindparam("limit"))
)


def _version(row: Any, *, full: bool) -> DictionaryVersion:
    values = dict(row._mapping)
    has_dry_run = values.pop("has_dry_run", None)
    if full:
        values["has_dry_run"] = values.get("dry_run") is not None
    else:
        values.update(text="", dry_run=None, has_dry_run=bool(has_dry_run))
    return DictionaryVersion(**values)


class SqlDictionaryVersions:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def lock(self) -> int:
        stmt = _GENERATION.with_for_update() if self._conn.dialect.name == "postgresql" else _GENERATION
        return int((await self._conn.execute(stmt)).scalar_one())

    async def generation(self) -> int:
        return int((await self._conn.execute(_GENERATION)).scalar_one())

    async def set_generation(self, generation: int, *, by: str, now: datetime) -> None:
        await self._conn.execute(
            dictionary_publication.update()
            .where(dictionary_publication.c.id == 1)
            .values(generation=generation, changed_by=by, changed_at=now)
        )

    async def add(self, version: DictionaryVersion) -> DictionaryVersion:
        values = {c.name: getattr(version, c.name) for c in dv.c if c.name != "id"}
        new_id = (await self._conn.execute(dv.insert().returning(dv.c.id), values)).scalar_one()
        return DictionaryVersion(**{**values, "id": int(new_id), "has_dry_run": version.dry_run is not None})

    async def get(self, version_id: int) -> DictionaryVersion | None:
        row = (await self._conn.execute(select(dv).where(dv.c.id == version_id))).first()
        return None if row is None else _version(row, full=True)

    async def list(self, *, name: str | None = None, state: str | None = None) -> list[DictionaryVersion]:
        stmt = select(*_LISTED, dv.c.dry_run.is_not(None).label("has_dry_run")).order_by(dv.c.id.desc())
        if name is not None:
            stmt = stmt.where(dv.c.name == name)
        if state is not None:
            stmt = stmt.where(dv.c.state == state)
        return [_version(row, full=False) for row in await self._conn.execute(stmt)]

    async def published(self) -> list[DictionaryVersion]:
        rows = await self._conn.execute(select(dv).where(dv.c.state == "published").order_by(dv.c.name))
        return [_version(row, full=True) for row in rows]

    async def update(self, version_id: int, *, expect: DictionaryState, **values: Any) -> bool:
        stmt = dv.update().where(dv.c.id == version_id, dv.c.state == expect).values(**values)
        return (await self._conn.execute(stmt)).rowcount == 1

    async def recorded_payloads(self, platform: str, *, refunds: bool, limit: int) -> list[RecordedPayload]:
        # Each source newest first by its own sequence (an index walk), then the payloads by hash:
        # bounded work however many orders the platform has.
        if refunds:
            hits = await self._hits(_REFUNDS, platform, limit)
        else:
            hits = await self._hits(_ORDERS, platform, limit) + await self._hits(_INTERCEPTS, platform, limit)
        hits = sorted(hits, key=lambda h: h.at, reverse=True)[:limit]
        shas = sorted({h.sha for h in hits})
        bodies: dict[str, bytes] = {}
        for start in range(0, len(shas), 500):
            stmt = select(raw_payloads.c.sha256, raw_payloads.c.body).where(
                raw_payloads.c.sha256.in_(shas[start : start + 500])
            )
            bodies.update({r.sha256: zlib.decompress(r.body) for r in await self._conn.execute(stmt)})
        return [
            RecordedPayload(
                source=h.source, ref=h.ref, platform_order_id=h.platform_order_id, shop_id=h.shop_id, body=bodies[h.sha]
            )
            for h in hits
            if h.sha in bodies
        ]

    async def _hits(self, source: _Source, platform: str, limit: int) -> list[_Hit]:
        rows = await self._conn.execute(source.stmt, {"platform": platform, "limit": limit})
        return [_Hit(source.name, *row) for row in rows]

    async def recorded_verdicts(self, *, limit: int) -> list[RecordedOrder]:
        hits: list[tuple[datetime, RecordedOrder]] = []
        for row in await self._conn.execute(_VERDICT_ORDERS, {"limit": limit}):
            order = RecordedOrder(
                source="order",
                ref=row.id,
                platform=row.platform,
                shop_id=row.shop_id,
                platform_order_id=row.platform_order_id,
                canonical=row.canonical,
                rules_version=row.rules_version,
                recorded=row.state,
            )
            hits.append((row.updated_at, order))
        for row in await self._conn.execute(_VERDICT_INTERCEPTS, {"limit": limit}):
            intercept = RecordedOrder(
                source="intercept",
                ref=row.id,
                platform=row.platform,
                shop_id=row.shop_id,
                platform_order_id=row.platform_order_id,
                canonical=row.snapshot,
                rules_version=row.rules_version,
                recorded="intercepted",
            )
            hits.append((row.created_at, intercept))
        hits.sort(key=lambda h: h[0], reverse=True)
        return [h[1] for h in hits[:limit]]

    async def recorded_orders(self, targets: Sequence[str], *, limit: int) -> list[OrderRecord]:
        if not targets:
            return []
        stmt = select(orders).where(orders.c.erp_target.in_(list(targets))).order_by(orders.c.seq.desc()).limit(limit)
        return [OrderRecord(**row._mapping) for row in await self._conn.execute(stmt)]
