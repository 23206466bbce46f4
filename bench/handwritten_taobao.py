"""A hand-written Taobao → canonical order translator: the yardstick for the compiled dictionary.

It does the same work as ``mappings/platforms/taobao.toml`` compiled (same fields, same values,
same checks a careful person keeps: NFKC text, exact yuan → fen with Decimal, zone-less times as
Asia/Shanghai, required fields present, status in the table), written directly against the
msgspec Structs of ``schemas/order.py``. It is not a second mapper for production: it exists so
``bench/mapping.py`` can say how much the dictionary compiler costs over plain Python.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from handwritten_common import carrier_lookup, count, first, ident, local_time, pii_state, raw, required

# Text is normalised as everywhere in the gateway (NFKC, zero-width characters, white space).
from gateway.mapping.transforms import normalize_text as _text
from gateway.regions import normalise
from schemas.order import (
    Buyer,
    CanonicalOrder,
    Line,
    LineRefund,
    Presale,
    Promotion,
    Receiver,
    Shipment,
    ShipmentLine,
    Spec,
    Totals,
)

_HUNDRED = Decimal(100)

STATUS = {
    "TRADE_NO_CREATE_PAY": "PENDING_PAYMENT",
    "WAIT_BUYER_PAY": "PENDING_PAYMENT",
    "PAY_PENDING": "PENDING_PAYMENT",
    "WAIT_PRE_AUTH_CONFIRM": "PENDING_PAYMENT",
    "PAID_FORBID_CONSIGN": "PAID_HOLD",
    "WAIT_SELLER_SEND_GOODS": "READY_TO_SHIP",
    "SELLER_CONSIGNED_PART": "PARTIALLY_SHIPPED",
    "WAIT_BUYER_CONFIRM_GOODS": "SHIPPED",
    "TRADE_BUYER_SIGNED": "SHIPPED",
    "TRADE_FINISHED": "COMPLETED",
    "TRADE_CLOSED_BY_TAOBAO": "CANCELLED",
    "TRADE_CLOSED": "CLOSED_REFUNDED",
}
REFUND = {
    "NO_REFUND": "NONE",
    "WAIT_SELLER_AGREE": "REQUESTED",
    "WAIT_BUYER_RETURN_GOODS": "IN_PROGRESS",
    "WAIT_SELLER_CONFIRM_GOODS": "IN_PROGRESS",
    "SELLER_REFUSE_BUYER": "REJECTED",
    "CLOSED": "CLOSED",
    "SUCCESS": "REFUNDED",
}
PRESALE_STAGE = {
    "FRONT_NOPAID_FINAL_NOPAID": "deposit_unpaid",
    "FRONT_PAID_FINAL_NOPAID": "deposit_paid",
    "FRONT_PAID_FINAL_PAID": "balance_paid",
}
# Longest matching prefix wins: (prefix, kind, funded_by), longest first.
_PROMOTIONS = sorted(
    [
        ("mjs-", "full_reduction", "seller"),
        ("shopbonus-", "coupon", "seller"),
        ("Tmall$tmallItemPromotion", "item_discount", "seller"),
        ("Tmall$tmallCoupon", "coupon", "platform"),
        ("Tmall$commonItemPromotion", "item_discount", "seller"),
        ("Tmall$shopbonus", "coupon", "seller"),
    ],
    key=lambda p: -len(p[0]),
)

# The same value table the dictionary looks carriers up in.
_carrier = carrier_lookup("taobao")


# Taobao's own yuan → fen, as first written: unlike handwritten_common.fen it does not refuse a bool
# or a non-number (True reads as 1 yuan; the dictionary refuses it), so the shared one would change
# what this twin computes.
def _fen(v: Any, default: int | None = None) -> int | None:
    if v is None or v == "":
        return default
    d = Decimal(v.strip().replace(",", "") if isinstance(v, str) else repr(v) if isinstance(v, float) else v)
    f = d * _HUNDRED
    if f != f.to_integral_value():
        raise ValueError(f"amount {v!r} has fractions of a fen")
    return int(f)


def _spec(v: Any) -> list[Spec]:
    t = _text(v)
    if t is None:
        return []
    out = []
    for part in t.split(";"):
        if part.strip():
            name, sep, val = part.partition(":")
            out.append(Spec(name=name.strip() or None, value=val.strip()) if sep else Spec(value=name.strip()))
    return out


def _line(o: dict[str, Any]) -> Line:
    qty = required(count(o.get("num")), "num")
    price = required(_fen(o.get("price")), "price")
    line_total = price * qty
    paid = _fen(o.get("divide_order_fee"))
    if paid is None:
        paid = _fen(o.get("total_fee"), line_total) - _fen(o.get("part_mjz_discount"), 0)  # type: ignore[operator]
    refund_id = ident(o.get("refund_id"))
    status = o.get("refund_status")
    return Line(
        line_id=required(ident(first(o, "oid_str", "oid")), "oid"),
        product_id=ident(o.get("num_iid")),
        sku_id=ident(o.get("sku_id")),
        merchant_sku=_text(first(o, "outer_sku_id", "outer_iid")),
        title=_text(o.get("title")),
        spec=_spec(o.get("sku_properties_name")),
        qty=qty,
        unit_price_fen=price,
        line_total_fen=line_total,
        paid_fen=paid,
        discount_fen=line_total - paid,
        discount_source="platform",
        refund=LineRefund(
            state=REFUND[status] if status else "NONE",  # type: ignore[arg-type]
            refund_ids=[refund_id] if refund_id else [],
        ),
    )


def _promotion(p: dict[str, Any], order_id: str) -> Promotion:
    promo_id = _text(p.get("promotion_id"))
    kind, funded_by = "other", "unknown"
    if promo_id:
        for prefix, k, f in _PROMOTIONS:
            if promo_id.startswith(prefix):
                kind, funded_by = k, f
                break
    applies_to = ident(p.get("id"))
    on_line = bool(applies_to) and applies_to != order_id
    return Promotion(
        promo_id=promo_id,
        name=_text(p.get("promotion_name")),
        amount_fen=_fen(p.get("discount_fee"), 0),  # type: ignore[arg-type]
        scope="line" if on_line else "order",
        line_id=applies_to if on_line else None,
        kind=kind,  # type: ignore[arg-type]
        funded_by=funded_by,  # type: ignore[arg-type]
    )


def _shipments(orders: list[dict[str, Any]]) -> list[Shipment]:
    by_waybill: dict[str, Shipment] = {}
    for o in orders:
        waybill = _text(o.get("invoice_no"))
        if not waybill:
            continue
        line = ShipmentLine(
            line_id=required(ident(first(o, "oid_str", "oid")), "oid"), qty=required(count(o.get("num")), "num")
        )
        shipment = by_waybill.get(waybill)
        if shipment is None:
            by_waybill[waybill] = Shipment(
                waybill_no=waybill,
                carrier=_carrier(_text(o.get("logistics_company"))),
                carrier_name=_text(o.get("logistics_company")),
                shipped_at=local_time(o.get("consign_time")),
                lines=[line],
            )
            continue
        shipment.lines.append(line)
        if shipment.carrier_name is None:
            shipment.carrier_name = _text(o.get("logistics_company"))
            shipment.carrier = _carrier(shipment.carrier_name)
        if shipment.shipped_at is None:
            shipment.shipped_at = local_time(o.get("consign_time"))
    return list(by_waybill.values())


def _presale(t: dict[str, Any]) -> Presale | None:
    """Step (预售) trades: the stage, and what was paid (the deposit while only that is paid)."""
    code = _text(t.get("step_trade_status"))
    if not code:
        return None
    stage = PRESALE_STAGE[code]
    paid = _fen(t.get("step_paid_fee"))
    return Presale(
        stage=stage,  # type: ignore[arg-type]
        deposit_fen=paid if stage == "deposit_paid" else None,
        paid_fen=paid,
        balance_paid=stage == "balance_paid",
    )


def handwritten_taobao(payload: dict[str, Any]) -> CanonicalOrder:
    """``taobao.trade.fullinfo.get`` response → canonical order, as the Taobao dictionary does."""
    t = payload["trade_fullinfo_get_response"]["trade"]
    order_id = required(ident(first(t, "tid_str", "tid")), "tid")
    status = t.get("status")
    modified = local_time(t.get("modified"))
    name = raw(t.get("receiver_name"))
    phone = _text(first(t, "receiver_mobile", "receiver_phone"))
    orders = (t.get("orders") or {}).get("order") or []
    promotions = (t.get("promotion_details") or {}).get("promotion_detail") or []
    region = normalise(_text(t.get("receiver_state")), _text(t.get("receiver_city")), _text(t.get("receiver_district")))
    return CanonicalOrder(
        platform="taobao",
        order_id=order_id,
        shop_name=_text(first(t, "title", "seller_nick")),
        status=STATUS[status],  # type: ignore[arg-type]
        platform_status=_text(status),
        hold_reasons=["GROUP_BUY_PENDING"] if status == "PAID_FORBID_CONSIGN" else [],
        created_at=local_time(t.get("created")),
        paid_at=local_time(t.get("pay_time")),
        updated_at=modified,
        shipped_at=local_time(t.get("consign_time")),
        completed_at=local_time(t.get("end_time")),
        platform_version=modified,
        buyer=Buyer(
            platform_uid=ident(t.get("buyer_open_uid")),
            nick=raw(t.get("buyer_nick")),
            message=raw(t.get("buyer_message")),
        ),
        seller_memo=raw(t.get("seller_memo")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=pii_state(name, phone),  # type: ignore[arg-type]
            country=_text(t.get("receiver_country")),
            province=region.province,
            city=region.city,
            district=region.district,
            division_codes=region.codes or None,
            street=_text(t.get("receiver_town")) or region.town,
            detail=_text(t.get("receiver_address")),
            postal_code=_text(t.get("receiver_zip")),
        ),
        totals=Totals(
            goods_fen=required(_fen(t.get("total_fee")), "total_fee"),
            discount_fen=_fen(t.get("discount_fee"), 0) - _fen(t.get("adjust_fee"), 0),  # type: ignore[operator]
            freight_fen=_fen(t.get("post_fee"), 0),  # type: ignore[arg-type]
            paid_fen=required(_fen(t.get("payment")), "payment"),
        ),
        lines=[_line(o) for o in orders],
        promotions=[_promotion(p, order_id) for p in promotions],
        shipments=_shipments(orders),
        presale=_presale(t),
    )
