"""``gateway.ports.UnknownFields`` on SQLAlchemy Core: the per-platform unknown-field registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.db.engine import Executor
from adapters.db.tables import unknown_fields as uf
from gateway.unknown_fields import FieldStats


def _stats(row: Any) -> FieldStats:
    return FieldStats(
        platform=row.platform,
        path=row.path,
        count=int(row.count),
        first_seen=row.first_seen.isoformat(),
        last_seen=row.last_seen.isoformat(),
        sample=row.sample,
        numeric=int(row.numeric),
        zero=int(row.zero),
        ratio_sum=float(row.ratio_sum),
        ratio_sq_sum=float(row.ratio_sq_sum),
        equal_to=dict(row.equal_to or {}),
    )


def as_record(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "state": row.state,
        "target": row.target,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "draft_id": row.draft_id,
        "stats": _stats(row),
    }


class SqlUnknownFields:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(self, batch: list[FieldStats]) -> None:
        """Merge aggregates into the registry: counts and sums add up, sightings widen."""
        if not batch:
            return
        insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        for st in batch:
            # equal_to is a small map; merge it in Python under the row lock of this transaction.
            current = (
                await self._conn.execute(
                    select(uf.c.equal_to).where(uf.c.platform == st.platform, uf.c.path == st.path)
                )
            ).first()
            merged = dict(current.equal_to or {}) if current is not None else {}
            for k, v in st.equal_to.items():
                merged[k] = merged.get(k, 0) + v
            values = {
                "platform": st.platform,
                "path": st.path,
                "count": st.count,
                "first_seen": datetime.fromisoformat(st.first_seen or st.last_seen or ""),
                "last_seen": datetime.fromisoformat(st.last_seen or st.first_seen or ""),
                "sample": st.sample,
                "numeric": st.numeric,
                "zero": st.zero,
                "ratio_sum": st.ratio_sum,
                "ratio_sq_sum": st.ratio_sq_sum,
                "equal_to": merged,
                "state": "new",
            }
            stmt = insert(uf).values(**values)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[uf.c.platform, uf.c.path],
                set_={
                    "count": uf.c.count + ex.count,
                    "first_seen": uf.c.first_seen,  # the first sighting stays
                    "last_seen": ex.last_seen,
                    "sample": ex.sample,
                    "numeric": uf.c.numeric + ex.numeric,
                    "zero": uf.c.zero + ex.zero,
                    "ratio_sum": uf.c.ratio_sum + ex.ratio_sum,
                    "ratio_sq_sum": uf.c.ratio_sq_sum + ex.ratio_sq_sum,
                    "equal_to": ex.equal_to,
                },
            )
            await self._conn.execute(stmt)

    async def list(self, platform: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        q = select(uf).order_by(uf.c.platform, uf.c.last_seen.desc(), uf.c.id)
        if platform:
            q = q.where(uf.c.platform == platform)
        if state:
            q = q.where(uf.c.state == state)
        return [as_record(r) for r in (await self._conn.execute(q)).all()]

    async def get(self, field_id: int) -> dict[str, Any] | None:
        row = (await self._conn.execute(select(uf).where(uf.c.id == field_id))).first()
        return as_record(row) if row is not None else None

    async def decide(
        self, field_id: int, *, state: str, target: str | None, by: str, at: datetime, draft_id: int | None
    ) -> bool:
        """Record a decision on a field still ``new``; False when someone decided first."""
        res = await self._conn.execute(
            update(uf)
            .where(uf.c.id == field_id, uf.c.state == "new")
            .values(state=state, target=target, decided_by=by, decided_at=at, draft_id=draft_id)
        )
        return res.rowcount == 1
