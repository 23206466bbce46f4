"""Stock: counts a WMS or ERP reports (``POST /v1/stock``) and what the gateway reserved since.

A count says how much of one SKU a warehouse had *at a time* (``as_of``): ``on_hand``, and the part
the WMS has allocated itself (``reserved``). Counts arrive late and out of order, so an older count
never replaces a newer one (``StockRepository.put``; a tie goes to the later report).

The gateway reserves stock for the orders it accepts (``StockRepository.reserve``); a level's
``pending`` is what it reserved *after* the count, since the count already reflects the orders
before it. ``available = on_hand - reserved - pending``; each new count starts the gateway's own
share afresh, so a reservation never leaks. Safety stock is not a property of the level: it is a
rule parameter, passed to ``reserve`` as each item's ``floor``.

This module holds what every storage implementation shares (combining reservation items, the
floor check and its ``Conflict``) and the service behind the HTTP routes: decoding a report, and
storing it with its audit entry in one unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from gateway.clock import Clock
from gateway.errors import Conflict, PayloadInvalid, PayloadTooLarge
from gateway.ports import Reservation, StockLevel, StockPutResult, StockReport, UnitOfWorkFactory

MAX_ITEMS = 10_000  # per request; more answers 413 PAYLOAD_TOO_LARGE
MAX_QUANTITY = 2**53 - 1  # the largest integer every JSON reader keeps exact
MAX_FUTURE = timedelta(minutes=5)  # clock skew tolerated in a reported ``as_of``
MAX_QUERY_SKUS = 100  # ``GET /v1/stock?sku=…``

STOCK_BELOW_FLOOR = "stock_below_floor"  # ``Conflict.details["reason"]`` of a refused reservation

Key = tuple[str, str]  # (sku, warehouse)


# --------------------------------------------------------------------------- shared by the stores


def combine(items: Sequence[Reservation]) -> dict[Key, Reservation]:
    """One reservation per SKU and warehouse: quantities add up (two lines of one SKU), the
    strictest ``floor`` counts. Zero quantities stay (the floor is still checked for them) but
    are not stored. A negative quantity is a programming error."""
    combined: dict[Key, Reservation] = {}
    for item in items:
        if item.qty < 0:
            raise ValueError(f"reservation of {item.sku} in {item.warehouse}: negative qty {item.qty}")
        key = (item.sku, item.warehouse)
        prev = combined.get(key)
        if prev is None:
            combined[key] = item
            continue
        floors = [f for f in (prev.floor, item.floor) if f is not None]
        combined[key] = Reservation(
            sku=item.sku, warehouse=item.warehouse, qty=prev.qty + item.qty, floor=max(floors) if floors else None
        )
    return combined


@dataclass(frozen=True, slots=True)
class Shortfall:
    sku: str
    warehouse: str
    qty: int
    available: int  # without the order's own earlier reservations
    floor: int


def check_floors(order_id: str, wanted: Mapping[Key, Reservation], available: Mapping[Key, int]) -> None:
    """Raise ``Conflict`` when an item with a ``floor`` whose SKU and warehouse has a count
    (``available``, computed without the order's own reservations) would leave less than its
    floor. Items without a floor, or without a count, always pass."""
    short = [
        Shortfall(r.sku, r.warehouse, r.qty, available[key], r.floor)
        for key, r in sorted(wanted.items())
        if r.floor is not None and key in available and available[key] - r.qty < r.floor
    ]
    if short:
        raise stock_conflict(order_id, short)


def stock_conflict(order_id: str, short: Sequence[Shortfall]) -> Conflict:
    """The ``Conflict`` of a refused reservation: ``details["reason"] == STOCK_BELOW_FLOOR`` and
    ``shortfalls`` (each SKU, warehouse, quantity wanted, available and floor)."""
    en = "; ".join(
        f"{s.sku} in {s.warehouse}: {s.qty} wanted, {s.available} available, safety stock {s.floor}" for s in short
    )
    zh = "；".join(
        f"{s.sku}（仓库 {s.warehouse}）：需要 {s.qty}，可用 {s.available}，安全库存 {s.floor}" for s in short
    )
    return Conflict(
        f"not enough stock for order {order_id} above the safety stock: {en}",
        f"订单 {order_id} 的库存不足（扣除安全库存后）：{zh}",
        reason=STOCK_BELOW_FLOOR,
        shortfalls=[
            {"sku": s.sku, "warehouse": s.warehouse, "qty": s.qty, "available": s.available, "floor": s.floor}
            for s in short
        ],
    )


def one_per_key(reports: Sequence[StockReport]) -> None:
    """A ``put`` takes at most one count per SKU and warehouse (the HTTP body is checked for it
    with a 400 first); a second one is a programming error."""
    seen: set[Key] = set()
    for r in reports:
        key = (r.sku, r.warehouse)
        if key in seen:
            raise ValueError(f"two counts of {r.sku} in {r.warehouse} in one put")
        seen.add(key)


# --------------------------------------------------------------------------- the HTTP body

_Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
_Warehouse = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
_Quantity = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUANTITY)]
_AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class StockItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """One line of ``POST /v1/stock``: ``as_of`` defaults to the time the request was received."""

    sku: _Sku
    warehouse: _Warehouse
    on_hand: _Quantity
    reserved: _Quantity = 0
    as_of: _AwareTime | None = None


class StockBodyIn(msgspec.Struct, forbid_unknown_fields=True):
    items: list[StockItemIn]


_EXAMPLE = '{"items": [{"sku": "A-1", "warehouse": "SH01", "on_hand": 10}]}'
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def decode_stock_body(raw: bytes, *, max_bytes: int, now: datetime) -> list[StockReport]:
    """The counts of a ``POST /v1/stock`` body, each with its ``as_of`` (``now`` when absent).

    Raises:
        PayloadTooLarge: the body is over ``max_bytes``, or holds more than ``MAX_ITEMS`` items.
        PayloadInvalid: not JSON, not the shape (``path`` names the field), no items, a SKU and
            warehouse twice, or an ``as_of`` more than ``MAX_FUTURE`` ahead of ``now``.
    """
    PayloadTooLarge.check(raw, max_bytes)
    if not raw.strip():
        raise PayloadInvalid(f"the body is empty; send {_EXAMPLE}", f"报文为空；请发送 {_EXAMPLE}")
    try:
        body = msgspec.json.decode(raw, type=StockBodyIn)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _AT_PATH.search(text)
        details = {"path": found["path"]} if found else {}
        raise PayloadInvalid(
            f"the stock report is invalid: {text}", f"库存报文无效：{text}", hint=f"send {_EXAMPLE}", **details
        ) from None
    except msgspec.DecodeError as exc:
        raise PayloadInvalid(f"the body is not JSON: {exc}", f"报文不是合法的 JSON：{exc}") from None
    items = body.items
    if not items:
        raise PayloadInvalid("items is empty: report at least one count", "items 为空：至少需要一条库存", path="items")
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(
            f"{len(items)} items; at most {MAX_ITEMS} per request: send them in several requests",
            f"共 {len(items)} 条；每次请求最多 {MAX_ITEMS} 条，请分多次发送",
            limit=MAX_ITEMS,
            path="items",
        )
    first: dict[Key, int] = {}
    reports: list[StockReport] = []
    for i, item in enumerate(items):
        key = (item.sku, item.warehouse)
        if key in first:
            j = first[key]
            raise PayloadInvalid(
                f"items[{i}] repeats {item.sku} in {item.warehouse} of items[{j}]: one count per SKU and warehouse",
                f"items[{i}] 与 items[{j}] 重复（{item.sku}，仓库 {item.warehouse}）：每个 SKU 和仓库只能有一条",
                path=f"items[{i}]",
            )
        first[key] = i
        if item.as_of is not None and item.as_of - now > MAX_FUTURE:
            raise PayloadInvalid(
                f"items[{i}].as_of {item.as_of.isoformat()} is in the future (received at {now.isoformat()})",
                f"items[{i}].as_of {item.as_of.isoformat()} 晚于接收时间 {now.isoformat()}",
                path=f"items[{i}].as_of",
            )
        reports.append(
            StockReport(
                sku=item.sku,
                warehouse=item.warehouse,
                on_hand=item.on_hand,
                reserved=item.reserved,
                as_of=item.as_of or now,
            )
        )
    return reports


# --------------------------------------------------------------------------- the service


class StockReported(msgspec.Struct, kw_only=True):
    """The answer to ``POST /v1/stock`` (202)."""

    applied: int  # counts stored
    stale: int  # counts older than the stored one: ignored
    audit_seq: int | None = None  # the ``stock.reported`` entry


async def report_stock(
    items: Sequence[StockReport], *, uow_factory: UnitOfWorkFactory, clock: Clock, actor: str
) -> StockReported:
    """Store the counts and one ``stock.reported`` audit entry (counts of what was reported, not
    the list) in one unit of work."""
    now = clock.now()
    as_of = [r.as_of for r in items]
    async with uow_factory() as uow:
        result: StockPutResult = await uow.stock.put(items, now=now)
        entry = await uow.audit.append(
            actor=actor,
            action="stock.reported",
            subject_type="stock",
            subject_id="levels",
            data={
                "items": len(items),
                "applied": result.applied,
                "stale": result.stale,
                "skus": len({r.sku for r in items}),
                "warehouses": len({r.warehouse for r in items}),
                "as_of_oldest": min(as_of).isoformat() if as_of else None,
                "as_of_newest": max(as_of).isoformat() if as_of else None,
            },
        )
        await uow.commit()
    return StockReported(applied=result.applied, stale=result.stale, audit_seq=entry.seq if entry else None)


def level_body(level: StockLevel) -> dict[str, Any]:
    """One level as ``GET /v1/stock`` shows it."""
    return {
        "sku": level.sku,
        "warehouse": level.warehouse,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "pending": level.pending,
        "available": level.available,
        "as_of": level.as_of.isoformat(),
    }


def query_skus(skus: Sequence[str] | None) -> list[str]:
    """The SKUs of ``GET /v1/stock?sku=A&sku=B``, without repeats (a SKU may hold a comma)."""
    wanted = list(dict.fromkeys(s for s in skus or () if s.strip()))
    if not wanted:
        raise PayloadInvalid(
            "name at least one sku: ?sku=A-1&sku=B-2", "请至少指定一个 sku：?sku=A-1&sku=B-2", path="sku"
        )
    if len(wanted) > MAX_QUERY_SKUS:
        raise PayloadInvalid(
            f"{len(wanted)} skus; at most {MAX_QUERY_SKUS} per request",
            f"共 {len(wanted)} 个 sku；每次最多 {MAX_QUERY_SKUS} 个",
            path="sku",
        )
    return wanted
