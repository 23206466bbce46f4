"""``gateway.ports.ErpHandleRepository`` on SQLAlchemy Core: what an ERP adapter keeps per
document across retries and restarts (a U8+ OpenAPI ``tradeid``, erp-protocols.md §2 O1).

``put_if_absent`` is an ``INSERT … ON CONFLICT DO NOTHING`` followed by a read of the key: on
PostgreSQL a second writer's insert waits for the first one's transaction and then does nothing,
and its read (a new snapshot under READ COMMITTED) sees the first one's value; SQLite's single
writer serialises them anyway. So two racing workers end with one value and both use it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.db.engine import Executor
from adapters.db.tables import erp_handles

_h = erp_handles


class SqlErpHandleRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def get(self, target: str, code: str, name: str) -> str | None:
        stmt = select(_h.c.value).where(_h.c.target == target, _h.c.code == code, _h.c.name == name)
        return (await self._conn.execute(stmt)).scalar_one_or_none()

    async def put_if_absent(self, target: str, code: str, name: str, value: str, *, now: datetime) -> str:
        insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        stmt = (
            insert(_h)
            .values(target=target, code=code, name=name, value=value, created_at=now)
            .on_conflict_do_nothing(index_elements=[_h.c.target, _h.c.code, _h.c.name])
        )
        await self._conn.execute(stmt)
        stored = await self.get(target, code, name)
        if stored is None:  # cannot happen: the row was there or we just wrote it
            raise RuntimeError(f"erp handle {target}/{code}/{name} vanished while it was written")
        return stored
