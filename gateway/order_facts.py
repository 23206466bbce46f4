"""Intake's side of the stateful rules: read what they need in the unit of work that stores the
order, and write what the next orders' rules will need (fingerprints, stock reservations).

Only what an enabled rule or action needs is read: a rule set without OVERSELL and without a
warehouse action reads no stock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from gateway.ports import OrderRecord, Reservation, StockLevel, UnitOfWork
from gateway.rules.actions import gift_skus
from gateway.rules.catalog import Ruleset
from gateway.rules.facts import Facts, fingerprint
from gateway.rules.stateful import wanted
from gateway.versions import diff_orders
from schemas.order import CanonicalOrder

DEV_FINGERPRINT_KEY = b"order-gateway: set GATEWAY_FINGERPRINT_KEY in production"
"""The key when ``GATEWAY_FINGERPRINT_KEY`` is unset (a warning says so at start-up)."""

_ADDRESS_RULES = ("ADDRESS_CHANGE_REPEATED", "ADDRESS_FREIGHT_DIFF")
_CANCELLED = ("CANCELLED", "CLOSED_REFUNDED")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def needs_stock(ruleset: Ruleset) -> bool:
    return ruleset.active("OVERSELL") or any(a.spec.do == "warehouse" and a.spec.enabled for a in ruleset.actions)


async def gather_facts(
    uow: UnitOfWork,
    order: CanonicalOrder,
    canonical: dict[str, Any],
    *,
    stored: OrderRecord | None,
    ruleset: Ruleset,
    now: datetime,
    key: bytes,
) -> Facts:
    """What the database knows about ``order`` (``stored``: the version it replaces, if any)."""
    previous = stored.canonical if stored is not None else None
    changes = diff_orders(previous, canonical) if previous is not None else None
    changed_at = _parse(order.updated_at) or now
    address_changes: tuple[datetime, ...] = ()
    if stored is not None and changes is not None and changes.address and ruleset.active(_ADDRESS_RULES[0]):
        times = []
        for entry in await uow.orders.timeline(stored.id):
            at = entry.detail.get("address_changed_at") if entry.kind == "order.updated" else None
            if at and (t := _parse(at)) is not None:
                times.append(t)
        address_changes = tuple(times)
    fp = None
    duplicates = None
    if ruleset.active("CROSS_CHANNEL_DUPLICATE"):
        fp = fingerprint(canonical, key)
        duplicates = ()
        if fp is not None:
            hours = float(ruleset.rules["CROSS_CHANNEL_DUPLICATE"].params.get("window_hours", 24))
            duplicates = tuple(
                await uow.fingerprints.matches(
                    fp, since=now - timedelta(hours=hours), exclude_order_id=stored.id if stored else None
                )
            )
    stock = None
    if needs_stock(ruleset):
        skus = {ln.merchant_sku for ln in order.lines if ln.merchant_sku} | gift_skus(ruleset.actions)
        stock = await _levels_by_sku(uow, skus)
    return Facts(
        now=now,
        previous=previous,
        changes=changes,
        changed_at=changed_at,
        address_changes=address_changes,
        fingerprint=fp,
        duplicates=duplicates,
        stock=stock,
    )


async def _levels_by_sku(uow: UnitOfWork, skus: set[str]) -> dict[str, dict[str, StockLevel]]:
    """The stock levels of ``skus``: SKU → warehouse → level (none read for no SKU)."""
    stock: dict[str, dict[str, StockLevel]] = {}
    for level in await uow.stock.levels(sorted(skus)) if skus else ():
        stock.setdefault(level.sku, {})[level.warehouse] = level
    return stock


def timeline_detail(facts: Facts) -> dict[str, Any]:
    """What a new version changed, for its ``order.updated`` timeline entry and audit entry."""
    if facts.changes is None:
        return {}
    detail: dict[str, Any] = {"changes": facts.changes.detail()}
    if facts.changes.address and facts.changed_at is not None:
        detail["address_changed_at"] = facts.changed_at.isoformat()
    return detail


def placements(order: CanonicalOrder, stock: dict[str, dict[str, StockLevel]]) -> list[tuple[str, str, int]]:
    """Where the order takes its stock, (sku, warehouse, qty): each SKU that has a count, in the
    warehouse the actions chose (else in its warehouse with the most available). A SKU nobody
    counted takes nothing: its first count will include the order."""
    out = []
    for sku, qty in wanted(order).items():
        levels = stock.get(sku, {})
        warehouse = order.fulfilment.warehouse
        if warehouse is None and levels:
            warehouse = max(levels.values(), key=lambda lv: lv.available).warehouse
        if warehouse in levels:
            out.append((sku, warehouse, qty))
    return out


def reservations(order: CanonicalOrder, facts: Facts, ruleset: Ruleset, tables: dict[str, Any]) -> list[Reservation]:
    """What the order holds of stock (``placements``). With OVERSELL on, each is guarded by its
    safety stock (``StockRepository.reserve`` refuses it when another order took the stock since
    the facts were read)."""
    guard = ruleset.active("OVERSELL")
    params = ruleset.rules["OVERSELL"].params if guard else {}
    safety_table = tables.get(str(params.get("safety_table", "safety_stock"))) or {}
    return [
        Reservation(
            sku=sku,
            warehouse=warehouse,
            qty=qty,
            floor=int(safety_table.get(sku, params.get("safety", 0))) if guard else None,
        )
        for sku, warehouse, qty in placements(order, facts.stock or {})
    ]


async def record_facts(
    uow: UnitOfWork,
    order: CanonicalOrder,
    facts: Facts,
    *,
    order_id: str,
    state: str,
    ruleset: Ruleset,
    tables: dict[str, Any],
    now: datetime,
) -> None:
    """After the order is stored as ``state``: its fingerprint, and its stock reservations (an
    order to deliver holds stock; a held or cancelled one holds none)."""
    if facts.fingerprint is not None and (facts.changes is None or facts.changes.address or facts.changes.lines_added):
        await uow.fingerprints.add(
            facts.fingerprint,
            order_id=order_id,
            platform=order.platform,
            shop_id=order.shop_id or "",
            platform_order_id=order.order_id,
            at=now,
        )
    if facts.stock is None:
        return
    if state == "held" or order.status in _CANCELLED:
        if facts.previous is not None:
            await uow.stock.release(order_id)
        return
    items = reservations(order, facts, ruleset, tables)
    if not items and facts.previous is None:
        return  # nothing to hold, nothing held before: the unit stays one PostgreSQL can group
    if state != "accepted":  # on its way to the ERP already: the stock is taken, guarded or not
        items = [Reservation(sku=r.sku, warehouse=r.warehouse, qty=r.qty) for r in items]
    await uow.stock.reserve(order_id, items, at=now)


async def reserve_approved(uow: UnitOfWork, order_id: str, canonical: dict[str, Any], *, now: datetime) -> None:
    """A held order a person approved holds its stock from now on, as an accepted one does
    (``placements``), but without a safety-stock guard: approving an order held for OVERSELL is
    the decision to take the stock anyway."""
    order = msgspec.convert(canonical, CanonicalOrder)
    stock = await _levels_by_sku(uow, set(wanted(order)))
    items = [Reservation(sku=sku, warehouse=wh, qty=qty) for sku, wh, qty in placements(order, stock)]
    if items:
        await uow.stock.reserve(order_id, items, at=now)
