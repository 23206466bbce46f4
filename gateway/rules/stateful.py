"""Checks that need more than the order: its earlier versions, other orders, and stock.

They read ``ctx.facts`` (``gateway.rules.facts``), which intake fills from the database in the
unit of work that stores the order. Where a fact was not looked up (None) the check does not
run: a dry run without history must not invent a verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from gateway.rules.catalog import Finding, RuleContext, check
from gateway.versions import ADDRESS_FIELDS
from schemas.order import CanonicalOrder

# --------------------------------------------------------------------------- address changes


@check("ADDRESS_CHANGE_REPEATED")
def address_change_repeated(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """The address changed again within ``window_hours`` (24) of an earlier change: more than
    ``max_changes`` (1) changes in the window. The first change passes."""
    facts = ctx.facts
    changes = facts.changes
    if changes is None or not changes.address or facts.changed_at is None:
        return
    window = timedelta(hours=float(params.get("window_hours", 24)))
    earlier = [t for t in facts.address_changes if facts.changed_at - window <= t <= facts.changed_at]
    allowed = int(params.get("max_changes", 1))
    if len(earlier) + 1 > allowed:
        yield Finding(
            "receiver",
            {
                "count": len(earlier) + 1,
                "window_hours": params.get("window_hours", 24),
                "max_changes": allowed,
                "fields": ", ".join(changes.address),
            },
        )


def _freight(receiver: dict[str, Any], table: dict[str, Any]) -> tuple[int | None, str]:
    """The table's freight for a receiver: by the GB/T 2260 province code, else the province's
    name, else ``"*"``; None when the table has none of them."""
    codes = receiver.get("division_codes") or {}
    for key in (codes.get("province"), receiver.get("province"), "*"):
        if key and key in table:
            try:
                return int(table[key]), str(receiver.get("province") or key)
            except (TypeError, ValueError):
                return None, str(key)
    return None, str(receiver.get("province") or "?")


@check("ADDRESS_FREIGHT_DIFF")
def address_freight_diff(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """An address change that moves the order to a region whose freight differs by more than
    ``max_diff_fen`` (1500, ±15 yuan) from the old one's. The freight per region comes from the
    target's value table ``table`` (``freight_by_region``), else the rule's own ``freight``
    parameter: keys are province codes or names, ``"*"`` the rest; values fen."""
    facts = ctx.facts
    if facts.changes is None or facts.previous is None:
        return
    if not set(facts.changes.address) & {"country", "province", "city", "district"}:
        return
    table = ctx.tables.get(str(params.get("table", "freight_by_region"))) or params.get("freight") or {}
    if not table:
        return
    old, old_name = _freight(facts.previous.get("receiver") or {}, table)
    new_receiver = {f: getattr(order.receiver, f) for f in ADDRESS_FIELDS}
    new_receiver["division_codes"] = order.receiver.division_codes
    new, new_name = _freight(new_receiver, table)
    if old is None or new is None:
        return
    limit = int(params.get("max_diff_fen", 1500))
    if abs(new - old) > limit:
        yield Finding(
            "receiver.province",
            {
                "from_region": old_name,
                "to_region": new_name,
                "from_fen": old,
                "to_fen": new,
                "diff_fen": new - old,
                "max_diff_fen": limit,
            },
        )


# --------------------------------------------------------------------------- duplicates


@check("CROSS_CHANNEL_DUPLICATE")
def cross_channel_duplicate(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """Another order for the same receiver phone and address and the same set of SKUs within
    ``window_hours`` (24), on another platform (also the same platform when ``same_platform``)."""
    facts = ctx.facts
    if facts.duplicates is None or facts.now is None:
        return
    since = facts.now - timedelta(hours=float(params.get("window_hours", 24)))
    same = bool(params.get("same_platform", False))
    others = [
        m
        for m in facts.duplicates
        if m.at >= since
        and (same or m.platform != order.platform)
        and not (m.platform == order.platform and m.platform_order_id == order.order_id)
    ]
    if others:
        first = others[0]
        yield Finding(
            "receiver",
            {
                "other_platform": first.platform,
                "other_order_id": first.platform_order_id,
                "other_id": first.order_id,
                "count": len(others),
                "window_hours": params.get("window_hours", 24),
            },
        )


# --------------------------------------------------------------------------- stock


def _safety(sku: str, ctx: RuleContext, params: dict[str, Any]) -> int:
    table = ctx.tables.get(str(params.get("safety_table", "safety_stock"))) or {}
    try:
        return int(table.get(sku, params.get("safety", 0)))
    except (TypeError, ValueError):
        return int(params.get("safety", 0))


def wanted(order: CanonicalOrder, previous: dict[str, Any] | None = None) -> dict[str, int]:
    """Quantity per merchant SKU the order takes from stock (refunded quantities left out); for a
    newer version, only what it takes beyond the version before."""
    out: dict[str, int] = {}
    for line in order.lines:
        if line.merchant_sku:
            out[line.merchant_sku] = out.get(line.merchant_sku, 0) + max(line.qty - (line.refund.qty or 0), 0)
    if previous is not None:
        for line in previous.get("lines", []):
            sku = line.get("merchant_sku")
            if sku in out:
                refund_qty = (line.get("refund") or {}).get("qty") or 0
                out[sku] -= max(int(line.get("qty", 0)) - int(refund_qty), 0)
    return {k: v for k, v in out.items() if v > 0}


@check("OVERSELL")
def oversell(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """Available (on hand − reserved by the WMS − reserved by the gateway since the count −
    safety stock) below what the order takes, in the warehouse the actions chose (else across
    every warehouse). SKUs without a count are not checked. Safety stock: the target's value
    table ``safety_table`` (``safety_stock``, SKU → units), else ``safety`` (0)."""
    stock = ctx.facts.stock
    if stock is None:
        return
    warehouse = order.fulfilment.warehouse
    for sku, qty in wanted(order, ctx.facts.previous).items():
        levels = stock.get(sku)
        if not levels:
            continue
        chosen = [levels[warehouse]] if warehouse in levels else ([] if warehouse else list(levels.values()))
        if warehouse and not chosen:
            continue  # the chosen warehouse has no count of this SKU: not checked
        available = sum(lv.available for lv in chosen)
        safety = _safety(sku, ctx, params)
        if available - safety < qty:
            i = next(i for i, ln in enumerate(order.lines) if ln.merchant_sku == sku)
            yield Finding(
                f"lines[{i}].qty",
                {
                    "merchant_sku": sku,
                    "warehouse": warehouse or "*",
                    "qty": qty,
                    "available": available,
                    "safety": safety,
                },
            )
