"""``gateway.ports.RefundRepository`` on SQLAlchemy Core: platform refunds as received, one row per
(platform, refund_id) holding its newest version, pending until their order is stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, literal, select

from adapters.db.engine import Executor
from adapters.db.repositories import conflict_on_duplicate, utcnow
from adapters.db.tables import refunds
from gateway.ports import RefundRecord


class SqlRefundRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def get(self, platform: str, refund_id: str) -> RefundRecord | None:
        r = refunds
        row = (await self._conn.execute(select(r).where(r.c.platform == platform, r.c.refund_id == refund_id))).first()
        return None if row is None else RefundRecord(**row._mapping)

    async def add(self, record: RefundRecord) -> RefundRecord:
        now = utcnow()
        values = _refund_values(record) | {
            "created_at": record.created_at or now,
            "updated_at": record.updated_at or now,
        }
        with conflict_on_duplicate(
            f"refund {record.refund_id} of {record.platform}", f"{record.platform} 退款 {record.refund_id}"
        ):
            seq = (await self._conn.execute(refunds.insert().returning(refunds.c.seq), values)).scalar_one()
        return RefundRecord(**values, seq=seq)

    async def replace(self, record: RefundRecord, *, expected_version: str | None) -> bool:
        r = refunds
        stmt = (
            r.update()
            .where(
                r.c.platform == record.platform,
                r.c.refund_id == record.refund_id,
                r.c.platform_version.is_not_distinct_from(literal(expected_version, String())),
            )
            .values(**_refund_values(record), updated_at=record.updated_at or utcnow())
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def stored_for_order(self, platform: str, platform_order_id: str) -> bool | None:
        return None  # concurrent writers: a refund may commit beside this transaction

    async def for_order(self, platform: str, platform_order_id: str) -> list[RefundRecord]:
        r = refunds
        stmt = select(r).where(r.c.platform == platform, r.c.platform_order_id == platform_order_id).order_by(r.c.seq)
        return [RefundRecord(**row._mapping) for row in await self._conn.execute(stmt)]

    async def mark_applied(self, platform: str, refund_ids: Sequence[str], *, order_id: str, now: datetime) -> None:
        if not refund_ids:
            return
        r = refunds
        await self._conn.execute(
            r.update()
            .where(r.c.platform == platform, r.c.refund_id.in_(list(refund_ids)))
            .values(state="applied", order_id=order_id, applied_at=now, updated_at=now)
        )


def _refund_values(record: RefundRecord) -> dict[str, Any]:
    return {
        "platform": record.platform,
        "refund_id": record.refund_id,
        "platform_order_id": record.platform_order_id,
        "order_id": record.order_id,
        "platform_version": record.platform_version,
        "state": record.state,
        "canonical": record.canonical,
        "payload_sha256": record.payload_sha256,
        "applied_at": record.applied_at,
    }
