"""A hand-written Pinduoduo → canonical order translator: the yardstick for the compiled dictionary.

It does the same work as ``mappings/platforms/pinduoduo.toml`` compiled (same fields, same values,
the same checks a careful person keeps: NFKC text, exact yuan → fen with Decimal, zone-less times
as Asia/Shanghai, required fields present, status codes in their tables, the order-level discount
spread over the goods lines by largest remainder), written directly against the msgspec Structs of
``schemas/order.py``. It is not a second mapper for production: it exists so ``bench/mapping.py``
can say how much the dictionary compiler costs over plain Python.
"""

from __future__ import annotations

from typing import Any

from handwritten_common import (
    VALUES,
    allocate,
    carrier_lookup,
    count,
    fen,
    first,
    ident,
    integer,
    local_time,
    pii_state,
    raw,
    region_id,
    required,
)

# Text is normalised as everywhere in the gateway (NFKC, zero-width characters, white space).
from gateway.mapping.transforms import normalize_text as _text
from gateway.regions import normalise
from schemas.order import (
    Buyer,
    CanonicalOrder,
    Fee,
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

STATUS = {"1": "READY_TO_SHIP", "2": "SHIPPED", "3": "COMPLETED"}
PRESALE_STAGE = {"0": "deposit_unpaid", "1": "deposit_paid", "2": "balance_paid"}
CLOSED = {"confirm_status=2": "CANCELLED", "group_status=2": "CANCELLED"}
HOLD = {
    "group_status=0": "GROUP_BUY_PENDING",
    "confirm_status=0": "GROUP_BUY_PENDING",
    "risk_control_status=1": "RISK_REVIEW",
}
LINE_REFUND = {
    **dict.fromkeys(("0",), "NONE"),
    **dict.fromkeys(("2", "3"), "REQUESTED"),
    **dict.fromkeys(("4", "5", "7", "8"), "IN_PROGRESS"),
    **dict.fromkeys(("6", "9"), "REJECTED"),
    "10": "REFUNDED",
    **dict.fromkeys(("11", "12", "13"), "CLOSED"),
    # exchanges, repairs, re-sends: not refunds
    **dict.fromkeys(("14", "15", "16", "17", "18", "21", "22", "23", "24", "25", "26", "27", "31", "32"), "NONE"),
}

# The same value tables the dictionary looks carriers and fee kinds up in.
_carrier = carrier_lookup("pinduoduo")
_FEE_KINDS: dict[str, str] = VALUES["fee_kinds"]


def _spec(v: Any) -> list[Spec]:
    t = _text(v)
    if t is None:
        return []
    return [Spec(value=part.strip()) for part in t.split(",") if part.strip()]


def _fee(f: dict[str, Any]) -> Fee:
    name = _text(f.get("service_name"))
    kind = _FEE_KINDS.get(name, _FEE_KINDS.get("*")) if name is not None else None
    return Fee(
        name=name,
        kind=kind or "other",  # type: ignore[arg-type]
        amount_fen=required(fen(f.get("service_fee")), "service_fee"),
        payer="buyer",
    )


def _waybills(items: list[dict[str, Any]]) -> list[Shipment]:
    out = []
    for d in items:
        waybill = _text(d.get("tracking_number"))
        if waybill:
            code = ident(d.get("logistics_id"))
            out.append(Shipment(waybill_no=waybill, carrier_platform_code=code, carrier=_carrier(code)))
    return out


def _presale(o: dict[str, Any]) -> Presale | None:
    """Deposit orders (trade_type 1, step_order_info): the stage, the deposit and what was paid."""
    step = o.get("step_order_info")
    if step is not None and not isinstance(step, dict):
        raise ValueError("step_order_info: expected an object")
    step = step or {}
    code = integer(step.get("step_trade_status"))
    stage = PRESALE_STAGE[str(code)] if code is not None else None
    if stage is None and integer(o.get("trade_type")) != 1:
        return None
    return Presale(
        stage=stage,  # type: ignore[arg-type]
        deposit_fen=fen(step.get("advanced_paid_fee")),
        paid_fen=fen(step.get("step_paid_fee")),
        balance_paid=stage == "balance_paid",
    )


def handwritten_pinduoduo(payload: dict[str, Any]) -> CanonicalOrder:
    """``pdd.order.information.get`` response → canonical order, as the Pinduoduo dictionary does."""
    o = payload["order_info_get_response"]["order_info"]
    order_sn = required(ident(o.get("order_sn")), "order_sn")
    items = o.get("item_list") or []
    gifts = o.get("gift_list") or []

    # Status: closing fields, then "not yet a deal", then risk control, then order_status.
    order_status, confirm, group, risk = (
        o.get("order_status"),
        o.get("confirm_status"),
        o.get("group_status"),
        o.get("risk_control_status"),
    )
    base = STATUS[str(required(order_status, "order_status"))]
    paid_at = local_time(o.get("pay_time"))
    closed = CLOSED.get(f"confirm_status={confirm}") or CLOSED.get(f"group_status={group}")
    unconfirmed = HOLD.get(f"group_status={group}") or HOLD.get(f"confirm_status={confirm}")
    risk_hold = HOLD.get(f"risk_control_status={risk}")
    holdable = closed is None and base == "READY_TO_SHIP"
    holds: list[str] = []
    if holdable:
        if unconfirmed and paid_at:
            holds.append(unconfirmed)
        if risk_hold and risk_hold != unconfirmed:
            holds.append(risk_hold)
    if closed:
        status = closed
    elif holdable and unconfirmed and not paid_at:
        status = "PENDING_PAYMENT"
    else:
        status = "PAID_HOLD" if holds else base
    after_sales = o.get("after_sales_status")
    after_sales_code = _text(after_sales)
    line_refund = LINE_REFUND[after_sales_code] if after_sales_code is not None else "NONE"

    # Money: order_change_amount (改价) is added back to goods and counted as a seller discount.
    change = fen(o.get("order_change_amount"), 0)
    seller = fen(o.get("seller_discount"), 0)
    platform = fen(o.get("platform_discount"), 0)
    capital_free = fen(o.get("capital_free_discount"), 0)
    discount_amount = fen(o.get("discount_amount"))
    if discount_amount is None:
        discount_amount = seller + platform + capital_free  # type: ignore[operator]
    discount = discount_amount + change  # type: ignore[operator]
    fees = [_fee(f) for f in o.get("service_fee_detail") or []]

    lines: list[Line] = []
    ship_lines: list[ShipmentLine] = []
    totals = []
    for it in items:
        sku = required(ident(it.get("sku_id")), "sku_id")
        qty = required(count(it.get("goods_count")), "goods_count")
        price = required(fen(it.get("goods_price")), "goods_price")
        totals.append(price * qty)
        lines.append(
            Line(
                line_id=f"{order_sn}:{sku}",
                product_id=ident(it.get("goods_id")),
                sku_id=sku,
                merchant_sku=_text(first(it, "outer_id", "outer_goods_id")),
                title=_text(it.get("goods_name")),
                spec=_spec(it.get("goods_spec")),
                qty=qty,
                unit_price_fen=price,
                line_total_fen=price * qty,
                discount_source="allocated",
                paid_fen=price * qty,
                refund=LineRefund(state=line_refund),  # type: ignore[arg-type]
            )
        )
        ship_lines.append(ShipmentLine(line_id=f"{order_sn}:{sku}", qty=qty))
    for line, share in zip(lines, allocate(discount, totals), strict=True):
        line.discount_fen = share
        line.paid_fen = line.line_total_fen - share
    for g in gifts:
        sku = required(ident(g.get("sku_id")), "sku_id")
        qty = required(count(g.get("goods_count")), "goods_count")
        lines.append(
            Line(
                line_id=f"{order_sn}:{sku}:gift",
                product_id=ident(g.get("goods_id")),
                sku_id=sku,
                merchant_sku=_text(first(g, "outer_id", "outer_goods_id")),
                title=_text(g.get("goods_name")),
                spec=_spec(g.get("goods_spec")),
                qty=qty,
                unit_price_fen=0,
                line_total_fen=0,
                paid_fen=0,
                is_gift=True,
            )
        )
        ship_lines.append(ShipmentLine(line_id=f"{order_sn}:{sku}:gift", qty=qty))

    promotions = [
        Promotion(name=name, kind="other", funded_by=funded_by, amount_fen=amount)  # type: ignore[arg-type]
        for name, funded_by, amount in (
            ("商家优惠", "seller", seller),
            ("平台优惠", "platform", platform),
            ("团长免单", "unknown", capital_free),
            ("商家改价", "seller", change),
        )
        if amount > 0  # type: ignore[operator]
    ]

    shipments = []
    waybill = _text(o.get("tracking_number"))
    if waybill:
        code = ident(o.get("logistics_id"))
        shipments.append(
            Shipment(
                waybill_no=waybill,
                carrier_platform_code=code,
                carrier=_carrier(code),
                shipped_at=local_time(o.get("shipping_time")),
                lines=ship_lines,
            )
        )
    for key in ("extra_delivery_list", "gift_delivery_list", "resend_delivery_list"):
        shipments += _waybills(o.get(key) or [])

    name = raw(first(o, "receiver_name", "receiver_name_mask"))
    phone = _text(first(o, "receiver_phone", "receiver_phone_mask"))
    updated = local_time(o.get("updated_at"))
    # PDD's town is the district; a township there (东莞/中山) becomes the street.
    region = normalise(_text(o.get("province")), _text(o.get("city")), _text(o.get("town")))
    region_ids = {
        k: v
        for k, v in (
            ("province", region_id(o.get("province_id"))),
            ("city", region_id(o.get("city_id"))),
            ("district", region_id(o.get("town_id"))),
        )
        if v
    }
    return CanonicalOrder(
        platform="pinduoduo",
        order_id=order_sn,
        status=status,  # type: ignore[arg-type]
        platform_status=(
            f"order_status={order_status}/confirm_status={confirm}/group_status={group}"
            f"/risk_control_status={risk}/refund_status={o.get('refund_status')}/after_sales_status={after_sales}"
        ),
        hold_reasons=holds,  # type: ignore[arg-type]
        created_at=local_time(o.get("created_time")),
        paid_at=paid_at,
        updated_at=updated,
        shipped_at=local_time(o.get("shipping_time")),
        completed_at=local_time(o.get("receive_time")),
        platform_version=updated,
        buyer=Buyer(message=raw(o.get("buyer_memo"))),
        seller_memo=raw(o.get("remark")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=pii_state(name, phone),  # type: ignore[arg-type]
            country=_text(o.get("country")),
            province=region.province,
            city=region.city,
            district=region.district,
            division_codes=region.codes or None,
            street=region.town,
            detail=raw(first(o, "receiver_address", "receiver_address_mask")),
            region_codes=region_ids or None,
        ),
        lines=lines,
        totals=Totals(
            goods_fen=required(fen(o.get("goods_amount")), "goods_amount") + change,
            discount_fen=discount,
            seller_discount_fen=seller + change,  # type: ignore[operator]
            platform_discount_fen=platform,
            freight_fen=fen(o.get("postage"), 0),  # type: ignore[arg-type]
            buyer_fee_fen=sum(f.amount_fen for f in fees),
            paid_fen=required(fen(o.get("pay_amount")), "pay_amount"),
        ),
        promotions=promotions,
        fees=fees,
        shipments=shipments,
        presale=_presale(o),
    )
