"""``gateway.ports.InterceptRepository`` on SQLAlchemy Core: the intercept log (what rules stopped,
with the rule-set and dictionary versions, the payload hash and a masked snapshot) and the
overrides people asked for or confirmed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select

from adapters.db.engine import Executor
from adapters.db.paging import decode_cursor, page_of
from adapters.db.repositories import insert_record, without_key
from adapters.db.tables import intercept_overrides, intercept_rules, intercepts
from gateway.ports import InterceptOverride, InterceptRecord, Page


class SqlInterceptRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(self, record: InterceptRecord) -> None:
        await insert_record(
            self._conn, intercepts, record, f"intercept {record.id}", f"拦截记录 {record.id}", skip=("override",)
        )
        if record.rule_codes:
            await self._conn.execute(
                intercept_rules.insert(),
                [{"intercept_id": record.id, "rule_code": code} for code in dict.fromkeys(record.rule_codes)],
            )

    async def list(
        self,
        *,
        rule: str | None,
        platform: str | None,
        shop: str | None,
        since: datetime | None,
        until: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Newest first; ``since`` inclusive, ``until`` exclusive."""
        i = intercepts
        stmt = select(i).order_by(i.c.seq.desc()).limit(limit + 1)
        if rule is not None:
            stmt = stmt.where(
                exists().where(intercept_rules.c.intercept_id == i.c.id, intercept_rules.c.rule_code == rule)
            )
        if platform is not None:
            stmt = stmt.where(i.c.platform == platform)
        if shop is not None:
            stmt = stmt.where(i.c.shop_id == shop)
        if since is not None:
            stmt = stmt.where(i.c.created_at >= since)
        if until is not None:
            stmt = stmt.where(i.c.created_at < until)
        if (after := decode_cursor(cursor)) is not None:
            stmt = stmt.where(i.c.seq < after)
        rows = (await self._conn.execute(stmt)).all()
        found = await overrides_of(self._conn, [row.id for row in rows[:limit]])
        return page_of(rows, limit, lambda row: intercept_from_row(row, found.get(row.id)))

    async def get(self, intercept_id: str) -> InterceptRecord | None:
        row = (await self._conn.execute(select(intercepts).where(intercepts.c.id == intercept_id))).first()
        if row is None:
            return None
        return intercept_from_row(row, (await overrides_of(self._conn, [intercept_id])).get(intercept_id))


def intercept_from_row(row: Any, override: InterceptOverride | None = None) -> InterceptRecord:
    return InterceptRecord(**without_key(row._mapping, "seq"), override=override)


async def overrides_of(conn: Executor, intercept_ids: Sequence[str]) -> dict[str, InterceptOverride]:
    """The override records of these intercepts, by intercept id (most have none)."""
    if not intercept_ids:
        return {}
    stmt = select(intercept_overrides).where(intercept_overrides.c.intercept_id.in_(list(intercept_ids)))
    return {row.intercept_id: InterceptOverride(**row._mapping) for row in await conn.execute(stmt)}
