"""``gateway.ports.ReviewRepository`` on SQLAlchemy Core: the queue of held orders and the
two-person overrides of intercepts (``gateway.review``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select

from adapters.db.engine import Executor
from adapters.db.intercepts import intercept_from_row
from adapters.db.paging import decode_cursor, page_of
from adapters.db.repositories import conflict_on_duplicate
from adapters.db.tables import intercept_overrides, intercept_rules, intercepts, orders
from gateway.ports import InterceptOverride, InterceptRecord, OrderRecord, Page, ReviewItem

_ov = intercept_overrides


class SqlReviewRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def queue(
        self, *, platform: str | None, shop: str | None, rule: str | None, cursor: str | None, limit: int
    ) -> Page:
        """Oldest order first (``orders.seq`` ascending, over the partial index of held orders)."""
        o = orders
        stmt = select(o).where(o.c.state == "held").order_by(o.c.seq).limit(limit + 1)
        if platform is not None:
            stmt = stmt.where(o.c.platform == platform)
        if shop is not None:
            stmt = stmt.where(o.c.shop_id == shop)
        if rule is not None:
            h, newer = intercepts.alias("h"), intercepts.alias("newer")
            stmt = stmt.where(
                exists().where(
                    h.c.order_id == o.c.id,
                    h.c.verdict == "hold",
                    intercept_rules.c.intercept_id == h.c.id,
                    intercept_rules.c.rule_code == rule,
                    ~exists().where(newer.c.order_id == h.c.order_id, newer.c.verdict == "hold", newer.c.seq > h.c.seq),
                )
            )
        if (after := decode_cursor(cursor)) is not None:
            stmt = stmt.where(o.c.seq > after)
        rows = (await self._conn.execute(stmt)).all()
        holds = await self._holds([row.id for row in rows[:limit]])
        return page_of(rows, limit, lambda row: ReviewItem(order=OrderRecord(**row._mapping), hold=holds.get(row.id)))

    async def _holds(self, order_ids: list[str]) -> dict[str, InterceptRecord]:
        if not order_ids:
            return {}
        i = intercepts
        stmt = select(i).where(i.c.order_id.in_(order_ids), i.c.verdict == "hold").order_by(i.c.seq)
        return {row.order_id: intercept_from_row(row) for row in await self._conn.execute(stmt)}  # newest wins

    async def latest_hold(self, order_id: str) -> InterceptRecord | None:
        return (await self._holds([order_id])).get(order_id)

    async def get_override(self, intercept_id: str) -> InterceptOverride | None:
        row = (await self._conn.execute(select(_ov).where(_ov.c.intercept_id == intercept_id))).first()
        return None if row is None else InterceptOverride(**row._mapping)

    async def request_override(self, record: InterceptOverride) -> InterceptOverride:
        values = {name: getattr(record, name) for name in record.__struct_fields__ if name != "seq"}
        with conflict_on_duplicate(
            f"an override of intercept {record.intercept_id}", f"拦截记录 {record.intercept_id} 的放行申请"
        ):
            seq = (await self._conn.execute(_ov.insert().returning(_ov.c.seq), values)).scalar_one()
        return InterceptOverride(**values, seq=seq)

    async def confirm_override(self, intercept_id: str, *, by: str, at: datetime, reason: str, order_id: str) -> bool:
        stmt = (
            _ov.update()
            .where(_ov.c.intercept_id == intercept_id, _ov.c.state == "requested")
            .values(state="confirmed", confirmed_by=by, confirmed_at=at, confirm_reason=reason, order_id=order_id)
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def overrides(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        stmt = select(_ov).order_by(_ov.c.seq.desc()).limit(limit + 1)
        if state is not None:
            stmt = stmt.where(_ov.c.state == state)
        if (after := decode_cursor(cursor)) is not None:
            stmt = stmt.where(_ov.c.seq < after)
        rows = (await self._conn.execute(stmt)).all()
        return page_of(rows, limit, lambda row: InterceptOverride(**row._mapping))
