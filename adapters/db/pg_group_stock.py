"""The stock and fingerprint part of a PostgreSQL intake group (``pg_group.py``).

A shop that reports stock makes every accepted order reserve its lines, and a reservation with a
safety stock must see every reservation committed before it: ``SqlStockRepository.reserve`` locks
the levels' rows (``FOR UPDATE``) until its COMMIT. Written one order per transaction, the orders
of a promotion's few hot SKUs queued on those row locks one fsync at a time, and held a pooled
connection each while they waited (76 orders/s at ``b916a0c``, ``docs/benchmarks.md``). In a group
the rows are locked once, in key order, before step 1; the floors are checked here, order after
order in the order the units came, each against the levels less what the units before it in the
group reserved; a unit refused gets its ``Conflict`` (intake judges it again) and is left out of the
group; after step 1 the reservations of the orders stored are inserted and the levels' running
``pending`` totals moved by one statement each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from gateway.errors import Conflict
from gateway.ports import Reservation
from gateway.stock import Key, check_floors, combine

_LOCK_LEVELS = """
SELECT l.sku, l.warehouse, l.on_hand, l.reserved, l.pending, l.as_of
FROM stock_levels AS l
JOIN jsonb_to_recordset($1::text::jsonb) AS k(sku text, warehouse text) USING (sku, warehouse)
ORDER BY l.sku, l.warehouse
FOR UPDATE OF l
"""
_INSERT_RESERVATIONS = """
INSERT INTO stock_reservations (order_id, sku, warehouse, qty, at)
SELECT order_id, sku, warehouse, qty, at
FROM jsonb_to_recordset($1::text::jsonb) AS u(order_id text, sku text, warehouse text, qty bigint, at timestamptz)
"""
_MOVE_PENDING = """
UPDATE stock_levels AS l SET pending = l.pending + d.delta
FROM jsonb_to_recordset($1::text::jsonb) AS d(sku text, warehouse text, delta bigint)
WHERE l.sku = d.sku AND l.warehouse = d.warehouse
"""
_INSERT_FINGERPRINTS = """
INSERT INTO order_fingerprints (fingerprint, order_id, platform, shop_id, platform_order_id, at)
SELECT fingerprint, order_id, platform, shop_id, platform_order_id, at
FROM jsonb_to_recordset($1::text::jsonb) AS u(
    fingerprint text, order_id text, platform text, shop_id text, platform_order_id text, at timestamptz)
ON CONFLICT (fingerprint, order_id) DO NOTHING
"""


class FingerprintRow(msgspec.Struct):
    fingerprint: str
    order_id: str
    platform: str
    shop_id: str
    platform_order_id: str
    at: datetime


@dataclass
class StockWrites:
    """What one new order of a group reserves (combined per SKU and warehouse) and fingerprints."""

    order_id: str
    wanted: dict[Key, Reservation] = field(default_factory=dict)
    at: datetime | None = None
    fingerprints: list[FingerprintRow] = field(default_factory=list)

    @classmethod
    def of(cls, order_id: str, reserve: Sequence[Any] | None, fingerprints: list[FingerprintRow]) -> StockWrites:
        """``reserve``: the recorded call's ``(order_id, items)`` args and its ``at``, or None."""
        if reserve is None:
            return cls(order_id, fingerprints=fingerprints)
        items, at = reserve
        return cls(order_id, wanted=combine(items), at=at, fingerprints=fingerprints)


def _text(rows: Any) -> str:
    return msgspec.json.encode(rows).decode()


async def check_group(raw: Any, writes: Sequence[StockWrites]) -> tuple[dict[str, Conflict], dict[Key, datetime]]:
    """Lock the levels the group reserves and check each order's floors in turn. Returns the
    orders refused, with their ``Conflict``, and the counts' times of the levels locked (for
    ``write_group``). Run first in the group's transaction."""
    keys = sorted({key for w in writes for key in w.wanted})
    if not keys:
        return {}, {}
    rows = await raw.fetch(_LOCK_LEVELS, _text([{"sku": s, "warehouse": w} for s, w in keys]))
    as_of = {(r["sku"], r["warehouse"]): r["as_of"] for r in rows}
    available = {(r["sku"], r["warehouse"]): int(r["on_hand"] - r["reserved"] - r["pending"]) for r in rows}
    refused: dict[str, Conflict] = {}
    for w in writes:
        try:
            check_floors(w.order_id, w.wanted, available)
        except Conflict as exc:
            refused[w.order_id] = exc
            continue
        for key, r in w.wanted.items():
            if key in available and w.at is not None and w.at > as_of[key]:
                available[key] -= r.qty
    return refused, as_of


async def write_group(raw: Any, writes: Sequence[StockWrites], as_of: dict[Key, datetime]) -> None:
    """The reservations and fingerprints of the orders step 1 stored, after it."""
    rows = [
        {"order_id": w.order_id, "sku": r.sku, "warehouse": r.warehouse, "qty": r.qty, "at": w.at}
        for w in writes
        for _, r in sorted(w.wanted.items())
        if r.qty > 0
    ]
    if rows:
        await raw.execute(_INSERT_RESERVATIONS, _text(rows))
        delta: dict[Key, int] = {}
        for row in rows:
            key = (row["sku"], row["warehouse"])
            if key in as_of and row["at"] > as_of[key]:
                delta[key] = delta.get(key, 0) + row["qty"]
        if delta:
            moves = [{"sku": s, "warehouse": wh, "delta": d} for (s, wh), d in sorted(delta.items())]
            await raw.execute(_MOVE_PENDING, _text(moves))
    prints = [f for w in writes for f in w.fingerprints]
    if prints:
        await raw.execute(_INSERT_FINGERPRINTS, _text(prints))
