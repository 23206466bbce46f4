"""``gateway.ports.TargetControls`` on SQLAlchemy Core: the stop-line control of each target."""

from __future__ import annotations

from sqlalchemy import select

from adapters.db.engine import Executor
from adapters.db.tables import target_controls as tc
from gateway.stopline import Control


class SqlTargetControls:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def all(self) -> dict[str, Control]:
        rows = (await self._conn.execute(select(tc))).all()
        return {
            r.target: Control(
                target=r.target,
                state=r.state,
                by=r.changed_by,
                armed=bool(r.armed),
                version=int(r.version),
                changed_at=r.changed_at,
                data=dict(r.data or {}),
            )
            for r in rows
        }

    async def put(self, control: Control) -> bool:
        values = {
            "state": control.state,
            "changed_by": control.by,
            "armed": int(control.armed),
            "version": control.version + 1,
            "changed_at": control.changed_at,
            "data": control.data,
        }
        if control.version == 0:
            found = (await self._conn.execute(select(tc.c.target).where(tc.c.target == control.target))).first()
            if found is not None:
                return False
            await self._conn.execute(tc.insert().values(target=control.target, **values))
            return True
        stmt = tc.update().where(tc.c.target == control.target, tc.c.version == control.version).values(**values)
        return (await self._conn.execute(stmt)).rowcount == 1
