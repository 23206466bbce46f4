"""Stock reads and reservations on SQLite's single writer, as plain SQL (``sqlite_direct.py`` explains why).

Every accepted order of a shop that reports stock reads its levels for the rules and reserves its
lines: five statements inside the writer's transaction. Through SQLAlchemy Core they cost more
CPU than the rest of the order's statements together (``docs/benchmarks.md``, intake at
``b916a0c``). The writer holds the database's only write lock from the first statement, so the
row locks PostgreSQL takes (``SqlStockRepository.reserve``) are not needed here; ``put`` (a
count, rare) stays on Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.db.sqlite_writer import WriterSession
from adapters.db.stock import SqlStockRepository
from adapters.db.tables import sqlite_time
from gateway.ports import Reservation, StockLevel
from gateway.stock import check_floors, combine

_LEVELS = (
    "SELECT sku, warehouse, on_hand, reserved, pending, as_of FROM stock_levels WHERE sku IN ({})"
    " ORDER BY sku, warehouse"
)
_LEVEL = "SELECT on_hand, reserved, pending, as_of FROM stock_levels WHERE sku = ? AND warehouse = ?"
_HELD = "SELECT sku, warehouse, qty, at FROM stock_reservations WHERE order_id = ?"
_DROP = "DELETE FROM stock_reservations WHERE order_id = ?"
_INSERT = "INSERT INTO stock_reservations (order_id, sku, warehouse, qty, at) VALUES (?, ?, ?, ?, ?)"
# The running total moves only for a reservation after the level's count (``adapters/db/stock.py``).
_MOVE = "UPDATE stock_levels SET pending = pending + ? WHERE sku = ? AND warehouse = ? AND as_of < ?"


def _time(text: str) -> datetime:
    """A ``UTCDateTime`` column's SQLite text back as an aware UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class SqliteStockRepository(SqlStockRepository):
    def __init__(self, session: WriterSession) -> None:
        super().__init__(session)
        self._session = session

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return []
        raw = await self._session.driver()
        rows = raw.execute(_LEVELS.format(", ".join("?" * len(wanted))), wanted).fetchall()
        return [
            StockLevel(
                sku=sku, warehouse=wh, on_hand=int(on_hand), reserved=int(res), pending=int(pend), as_of=_time(as_of)
            )
            for sku, wh, on_hand, res, pend, as_of in rows
        ]

    async def reserve(self, order_id: str, items: Sequence[Reservation], *, at: datetime) -> None:
        raw = await self._session.driver()
        wanted = combine(items)
        held = [(sku, wh, int(qty), _time(t)) for sku, wh, qty, t in raw.execute(_HELD, (order_id,))]
        available = {}
        for key, r in wanted.items():
            if r.floor is None:
                continue
            row = raw.execute(_LEVEL, key).fetchone()
            if row is None:
                continue
            on_hand, reserved, pending, as_of = row
            as_of_t = _time(as_of)
            own = sum(qty for (sku, wh, qty, t) in held if (sku, wh) == key and t > as_of_t)
            available[key] = int(on_hand - reserved - pending + own)
        check_floors(order_id, wanted, available)
        if held:
            raw.execute(_DROP, (order_id,))
            raw.executemany(_MOVE, [(-qty, sku, wh, sqlite_time(t)) for sku, wh, qty, t in held])
        rows = [(r.sku, r.warehouse, r.qty) for _, r in sorted(wanted.items()) if r.qty > 0]
        if rows:
            stamp = sqlite_time(at)
            raw.executemany(_INSERT, [(order_id, sku, wh, qty, stamp) for sku, wh, qty in rows])
            raw.executemany(_MOVE, [(qty, sku, wh, stamp) for sku, wh, qty in rows])

    async def release(self, order_id: str) -> None:
        raw = await self._session.driver()
        held = raw.execute(_HELD, (order_id,)).fetchall()
        if held:
            raw.execute(_DROP, (order_id,))
            raw.executemany(_MOVE, [(-int(qty), sku, wh, t) for sku, wh, qty, t in held])
