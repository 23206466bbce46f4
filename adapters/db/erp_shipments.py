"""``gateway.ports.ErpShipmentRepository`` on SQLAlchemy Core: shipments read back from the ERPs.

``add_if_new`` is an ``INSERT … ON CONFLICT DO NOTHING`` on the key (target, shipment_no,
document_code) whose
row count says who inserted: on PostgreSQL a second poller's insert waits for the first one's
transaction and then does nothing (row count 0), SQLite's single writer serialises them anyway. The
caller writes the order's timeline and audit entries only when it inserted, in the same
transaction, so each shipment becomes one status event however many pollers race; ``lock_order``
holds the order's row first, so the shipments of one order are counted one after the other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.db.engine import Executor
from adapters.db.tables import erp_shipments, orders
from gateway.ports import ErpShipmentRecord, OrderRecord

_s = erp_shipments


class SqlErpShipmentRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add_if_new(self, record: ErpShipmentRecord) -> bool:
        insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        stmt = (
            insert(_s)
            .values(
                target=record.target,
                shipment_no=record.shipment_no,
                order_id=record.order_id,
                document_code=record.document_code,
                shipped_at=record.shipped_at,
                carrier=record.carrier,
                waybill_no=record.waybill_no,
                lines=record.lines,
                completes_order=record.completes_order,
                event_id=record.event_id,
                recorded_at=record.recorded_at,
            )
            .on_conflict_do_nothing(index_elements=[_s.c.target, _s.c.shipment_no, _s.c.document_code])
        )
        result = await self._conn.execute(stmt)
        return result.rowcount == 1

    async def for_order(self, order_id: str) -> list[ErpShipmentRecord]:
        stmt = select(_s).where(_s.c.order_id == order_id).order_by(_s.c.recorded_at, _s.c.shipment_no)
        return [ErpShipmentRecord(**row._mapping) for row in await self._conn.execute(stmt)]

    async def lock_order(self, order_id: str) -> None:
        # PostgreSQL: the order's row, FOR UPDATE; a later read in this transaction (a statement
        # of its own under READ COMMITTED) then sees what the previous holder committed. SQLite's
        # single writer holds every write transaction apart already.
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(select(orders.c.id).where(orders.c.id == order_id).with_for_update())

    async def awaiting(self, target: str, *, changed_since: datetime, after_seq: int, limit: int) -> list[OrderRecord]:
        complete = exists().where(and_(_s.c.order_id == orders.c.id, _s.c.completes_order.is_(True)))
        stmt = (
            select(orders)
            .where(
                orders.c.erp_target == target,
                orders.c.state == "delivered",
                orders.c.updated_at >= changed_since,
                orders.c.seq > after_seq,
                ~complete,
            )
            .order_by(orders.c.seq)
            .limit(limit)
        )
        return [OrderRecord(**row._mapping) for row in await self._conn.execute(stmt)]
