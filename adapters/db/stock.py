"""``gateway.ports.StockRepository`` and ``FingerprintRepository`` on SQLAlchemy Core.

Stock levels are the newest count per SKU and warehouse; a level's ``pending`` is the sum of the
reservations made after its count (``gateway/stock.py`` explains the model). It is a column kept
as a running total, not a sum taken at every read: between two counts a promotion makes thousands
of reservations, and summing them for every order made each order cost more than the one before.
``put`` recomputes it for the levels a count replaced; ``reserve`` and ``release`` move it by the
quantities of the rows they add and remove that are after the level's count. ``reserve`` checks
the safety stock with the levels' rows locked: ``SELECT … FOR UPDATE`` in (sku, warehouse) order on
PostgreSQL, so two orders for the last unit are decided one after the other and concurrent
reservations of overlapping SKUs cannot deadlock; SQLite has one writer, which serialises them
already. A count written meanwhile (``put``) takes the same row lock.

Times are ``UTCDateTime`` columns: timezone-aware UTC at the port on both engines (naive UTC text
on SQLite, which compares like the times themselves, so ``at > as_of`` holds in SQL there too).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.db.engine import Executor
from adapters.db.tables import order_fingerprints, stock_levels, stock_reservations
from gateway.ports import FingerprintMatch, Reservation, StockLevel, StockPutResult, StockReport
from gateway.stock import check_floors, combine, one_per_key

# Rows per statement: each row binds six parameters, and both drivers stop at 32,767.
PUT_CHUNK = 1000

_l, _r, _f = stock_levels, stock_reservations, order_fingerprints


def _insert(conn: Executor, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _recount() -> Any:
    """A level's pending total from scratch: its reservations made after its count."""
    return (
        select(func.coalesce(func.sum(_r.c.qty), 0))
        .where(_r.c.sku == _l.c.sku, _r.c.warehouse == _l.c.warehouse, _r.c.at > _l.c.as_of)
        .scalar_subquery()
    )


# Moves the running total by a reservation row's quantity, when the row is after the count.
_MOVE = (
    update(_l)
    .where(_l.c.sku == bindparam("k_sku"), _l.c.warehouse == bindparam("k_wh"), _l.c.as_of < bindparam("k_at"))
    .values(pending=_l.c.pending + bindparam("k_delta"))
)


def _level(row: Any) -> StockLevel:
    return StockLevel(
        sku=row.sku,
        warehouse=row.warehouse,
        on_hand=int(row.on_hand),
        reserved=int(row.reserved),
        pending=int(row.pending),
        as_of=row.as_of,
    )


class SqlStockRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def put(self, reports: Sequence[StockReport], *, now: datetime) -> StockPutResult:
        """An upsert that overwrites only an older or equal ``as_of``; the rows it inserted or
        updated come back (``RETURNING``), the others were stale. Rows go in key order, so two
        concurrent reports of overlapping SKUs lock them in the same order."""
        one_per_key(reports)
        rows = sorted(
            (
                {
                    "sku": r.sku,
                    "warehouse": r.warehouse,
                    "on_hand": r.on_hand,
                    "reserved": r.reserved,
                    "as_of": r.as_of,
                    "updated_at": now,
                }
                for r in reports
            ),
            key=lambda row: (row["sku"], row["warehouse"]),
        )
        applied = 0
        for start in range(0, len(rows), PUT_CHUNK):
            stmt = _insert(self._conn, _l).values(rows[start : start + PUT_CHUNK])
            new = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[_l.c.sku, _l.c.warehouse],
                set_={
                    "on_hand": new.on_hand,
                    "reserved": new.reserved,
                    "as_of": new.as_of,
                    "updated_at": new.updated_at,
                },
                where=_l.c.as_of <= new.as_of,
            ).returning(_l.c.sku, _l.c.warehouse)
            keys = [(row.sku, row.warehouse) for row in await self._conn.execute(stmt)]
            applied += len(keys)
            if keys:  # a new count: the reservations it does not reflect yet are those after it
                recount = update(_l).where(tuple_(_l.c.sku, _l.c.warehouse).in_(keys)).values(pending=_recount())
                await self._conn.execute(recount)
        return StockPutResult(applied=applied, stale=len(rows) - applied)

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        """By SKU, then warehouse."""
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return []
        stmt = (
            select(_l.c.sku, _l.c.warehouse, _l.c.on_hand, _l.c.reserved, _l.c.as_of, _l.c.pending)
            .where(_l.c.sku.in_(wanted))
            .order_by(_l.c.sku, _l.c.warehouse)
        )
        return [_level(row) for row in await self._conn.execute(stmt)]

    async def reserve(self, order_id: str, items: Sequence[Reservation], *, at: datetime) -> None:
        wanted = combine(items)
        keys = sorted(wanted)
        if keys and self._conn.dialect.name == "postgresql":
            # Lock the counted rows first, in key order; READ COMMITTED then lets the next
            # statement see every reservation committed before the locks were granted.
            lock = (
                select(_l.c.sku)
                .where(tuple_(_l.c.sku, _l.c.warehouse).in_(keys))
                .order_by(_l.c.sku, _l.c.warehouse)
                .with_for_update()
            )
            await self._conn.execute(lock)
        held = await self._held(order_id)
        checked = [k for k in keys if wanted[k].floor is not None]
        if checked:
            stmt = select(_l.c.sku, _l.c.warehouse, _l.c.on_hand, _l.c.reserved, _l.c.pending, _l.c.as_of).where(
                tuple_(_l.c.sku, _l.c.warehouse).in_(checked)
            )
            available = {}
            for row in await self._conn.execute(stmt):
                own = sum(qty for (sku, wh, qty, t) in held if (sku, wh) == (row.sku, row.warehouse) and t > row.as_of)
                available[(row.sku, row.warehouse)] = int(row.on_hand - row.reserved - row.pending + own)
            check_floors(order_id, wanted, available)
        await self._drop(order_id, held)
        rows = [
            {"order_id": order_id, "sku": r.sku, "warehouse": r.warehouse, "qty": r.qty, "at": at}
            for k, r in sorted(wanted.items())
            if r.qty > 0
        ]
        if rows:
            await self._conn.execute(_r.insert(), rows)
            await self._move([(r["sku"], r["warehouse"], r["qty"], at) for r in rows], sign=1)

    async def release(self, order_id: str) -> None:
        await self._drop(order_id, await self._held(order_id))

    async def _held(self, order_id: str) -> list[tuple[str, str, int, datetime]]:
        """The order's reservations: (sku, warehouse, qty, at)."""
        stmt = select(_r.c.sku, _r.c.warehouse, _r.c.qty, _r.c.at).where(_r.c.order_id == order_id)
        return [(row.sku, row.warehouse, int(row.qty), row.at) for row in await self._conn.execute(stmt)]

    async def _drop(self, order_id: str, held: list[tuple[str, str, int, datetime]]) -> None:
        if held:
            await self._conn.execute(_r.delete().where(_r.c.order_id == order_id))
            await self._move(held, sign=-1)

    async def _move(self, rows: list[tuple[str, str, int, datetime]], *, sign: int) -> None:
        params = [{"k_sku": sku, "k_wh": wh, "k_at": at, "k_delta": sign * qty} for sku, wh, qty, at in rows]
        await self._conn.execute(_MOVE, params)


class SqlFingerprintRepository:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(
        self, fingerprint: str, *, order_id: str, platform: str, shop_id: str, platform_order_id: str, at: datetime
    ) -> None:
        stmt = (
            _insert(self._conn, _f)
            .values(
                fingerprint=fingerprint,
                order_id=order_id,
                platform=platform,
                shop_id=shop_id,
                platform_order_id=platform_order_id,
                at=at,
            )
            .on_conflict_do_nothing(index_elements=[_f.c.fingerprint, _f.c.order_id])
        )
        await self._conn.execute(stmt)

    async def matches(
        self, fingerprint: str, *, since: datetime, exclude_order_id: str | None
    ) -> list[FingerprintMatch]:
        stmt = (
            select(_f.c.order_id, _f.c.platform, _f.c.shop_id, _f.c.platform_order_id, _f.c.at)
            .where(_f.c.fingerprint == fingerprint, _f.c.at >= since)
            .order_by(_f.c.at, _f.c.order_id)
        )
        if exclude_order_id is not None:
            stmt = stmt.where(_f.c.order_id != exclude_order_id)
        return [FingerprintMatch(**row._mapping) for row in await self._conn.execute(stmt)]
