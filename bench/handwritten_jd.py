"""A hand-written JD POP → canonical order translator: the yardstick for the compiled dictionary.

It does the same work as ``mappings/platforms/jd.toml`` compiled (same fields, same values, the
same checks a careful person keeps: NFKC text, exact yuan → fen with Decimal, zone-less times as
Asia/Shanghai with JD's "0001-01-01" for unset, required fields present, states in their tables,
单品 coupons on their lines and the rest of the discount spread by largest remainder), written
directly against the msgspec Structs of ``schemas/order.py``. It is not a second mapper for
production: it exists so ``bench/mapping.py`` can say how much the dictionary compiler costs over
plain Python.
"""

from __future__ import annotations

from typing import Any

from handwritten_common import (
    allocate,
    carrier_lookup,
    count,
    fen,
    first,
    ident,
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
    Promotion,
    Receiver,
    Shipment,
    ShipmentLine,
    Totals,
)

STATUS = {
    "WAIT_SELLER_STOCK_OUT": "READY_TO_SHIP",
    "WAIT_SELLER_DELIVERY": "READY_TO_SHIP",
    "WAIT_SEND_CODE": "READY_TO_SHIP",
    "WAIT_GOODS_RECEIVE_CONFIRM": "SHIPPED",
    "FINISHED_L": "COMPLETED",
    "TRADE_CANCELED": "CANCELLED",
    "LOCKED": "PAID_HOLD",
    "POP_ORDER_PAUSE": "PAID_HOLD",
    "PAUSE": "PAID_HOLD",
}
AFTER_PAYMENT = {"TRADE_CANCELED": "CLOSED_REFUNDED"}
HOLD = {"LOCKED": "LOCKED", "POP_ORDER_PAUSE": "LOCKED", "PAUSE": "LOCKED"}
RECEIVER_NEEDED = {"READY_TO_SHIP", "PAID_HOLD"}
# couponType → (name, kind, funded_by)
COUPONS = {
    "20": ("套装优惠", "other", "unknown"),
    "28": ("闪团优惠", "other", "unknown"),
    "29": ("团购优惠", "other", "unknown"),
    "30": ("单品促销", "item_discount", "seller"),
    "34": ("手机红包", "redpack", "unknown"),
    "35": ("满返", "full_reduction", "unknown"),
    "39": ("京豆", "points", "unknown"),
    "41": ("京东券", "coupon", "unknown"),
    "52": ("礼品卡", "other", "unknown"),
    "100": ("店铺优惠", "coupon", "seller"),
}
SKU_COUPONS = {"30"}  # coupon types that must name their SKU

# The same value table the dictionary looks carriers up in.
_carrier = carrier_lookup("jd")


def _strip_prefixes(text: str | None, *prefixes: str | None) -> str | None:
    """``text`` without the given prefixes at its start, in order, each at most once."""
    if text is None:
        return None
    for p in prefixes:
        if p and text.startswith(p):
            text = text[len(p) :]
    return text.strip() or None


def _promotion(c: dict[str, Any], order_id: str) -> Promotion:
    ctype = _text(c.get("couponType"))
    sku = ident(c.get("skuId"))
    if sku is None and ctype in SKU_COUPONS:
        raise ValueError(f"coupon type {ctype} names no skuId")
    name, kind, funded_by = COUPONS.get(ctype or "", (None, "other", "unknown"))
    return Promotion(
        name=name or f"couponType={ctype}",
        kind=kind,  # type: ignore[arg-type]
        funded_by=funded_by,  # type: ignore[arg-type]
        amount_fen=required(fen(c.get("couponPrice")), "couponPrice"),
        scope="line" if sku else "order",
        line_id=f"{order_id}:{sku}" if sku else None,
    )


def handwritten_jd(payload: dict[str, Any]) -> CanonicalOrder:
    """``jingdong.pop.order.get`` response → canonical order, as the JD dictionary does."""
    o = payload["jingdong_pop_order_get_responce"]["orderDetailInfo"]["orderInfo"]
    order_id = required(ident(o.get("orderId")), "orderId")
    consignee = o.get("consigneeInfo") or {}
    items = o.get("itemInfoList") or []
    coupons = o.get("couponDetailList") or []

    name = raw(consignee.get("fullname"))
    phone = _text(first(consignee, "mobile", "telephone", "desen_mobile"))
    # JD's county is the district and town the street; fullAddress starts with the region, which is
    # stripped level by level, the normalised name before the name as sent (江苏省, then 江苏).
    province, city, county, town = (_text(consignee.get(k)) for k in ("province", "city", "county", "town"))
    region = normalise(province, city, county)
    street = town or region.town
    detail = _strip_prefixes(
        _text(consignee.get("fullAddress")),
        region.province,
        province,
        region.city,
        city,
        region.district,
        county,
        region.town,
        town,
    )
    region_ids = {
        k: v
        for k, v in (
            ("province", region_id(consignee.get("provinceId"))),
            ("city", region_id(consignee.get("cityId"))),
            ("district", region_id(consignee.get("countyId"))),
            ("street", region_id(consignee.get("townId"))),
        )
        if v
    }

    state = required(_text(o.get("orderState")), "orderState")
    base = STATUS[state]
    paid_at = local_time(o.get("paymentConfirmTime"))
    holds = [HOLD[state]] if state in HOLD else []
    if base in RECEIVER_NEEDED and not (name or phone or detail):
        holds.append("NO_RECEIVER")
    status = (AFTER_PAYMENT.get(state) if paid_at else None) or ("PAID_HOLD" if holds else base)

    promotions = [_promotion(c, order_id) for c in coupons]
    discount = sum(p.amount_fen for p in promotions)
    own: dict[str, int] = {}  # 单品 coupons by SKU
    for c in coupons:
        sku = ident(c.get("skuId"))
        if sku:
            own[sku] = own.get(sku, 0) + required(fen(c.get("couponPrice")), "couponPrice")

    lines: list[Line] = []
    ship_lines: list[ShipmentLine] = []
    nets = []
    for it in items:
        sku = required(ident(it.get("skuId")), "skuId")
        qty = required(count(it.get("itemTotal")), "itemTotal")
        price = required(fen(it.get("jdPrice")), "jdPrice")
        nets.append(price * qty - own.get(sku, 0))
        lines.append(
            Line(
                line_id=f"{order_id}:{sku}",
                product_id=ident(it.get("wareId")),
                sku_id=sku,
                merchant_sku=_text(first(it, "outerSkuId", "productNo")),
                title=_text(it.get("skuName")),
                qty=qty,
                unit_price_fen=price,
                line_total_fen=price * qty,
                discount_source="allocated",
                paid_fen=price * qty,
            )
        )
        ship_lines.append(ShipmentLine(line_id=f"{order_id}:{sku}", qty=qty))
    shares = allocate(discount - sum(own.values()), nets)
    for line, share in zip(lines, shares, strict=True):
        line.discount_fen = own.get(line.sku_id, 0) + share  # type: ignore[arg-type]
        line.paid_fen = line.line_total_fen - line.discount_fen

    tax = fen(o.get("taxFee"), 0)
    fees = [Fee(name="税费", kind="other", amount_fen=tax, payer="buyer")] if tax > 0 else []  # type: ignore[operator]
    shipments = []
    waybill = _text(o.get("waybill"))
    if waybill:
        code = ident(o.get("logisticsId"))
        shipments.append(
            Shipment(waybill_no=waybill, carrier_platform_code=code, carrier=_carrier(code), lines=ship_lines)
        )
    modified = local_time(o.get("modified"))
    return CanonicalOrder(
        platform="jd",
        order_id=order_id,
        status=status,  # type: ignore[arg-type]
        platform_status=state,
        hold_reasons=holds,  # type: ignore[arg-type]
        created_at=local_time(o.get("orderStartTime")),
        paid_at=paid_at,
        updated_at=modified,
        completed_at=local_time(o.get("orderEndTime")),
        platform_version=modified,
        buyer=Buyer(
            platform_uid=ident(o.get("open_id_buyer")),
            nick=raw(o.get("pin")),
            message=raw(o.get("orderRemark")),
        ),
        seller_memo=raw(o.get("venderRemark")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=pii_state(name, phone),  # type: ignore[arg-type]
            province=region.province,
            city=region.city,
            district=region.district,
            division_codes=region.codes or None,
            street=street,
            detail=detail,
            region_codes=region_ids or None,
        ),
        lines=lines,
        totals=Totals(
            goods_fen=required(fen(o.get("orderTotalPrice")), "orderTotalPrice"),
            discount_fen=discount,
            seller_discount_fen=fen(o.get("sellerDiscount")),
            freight_fen=fen(o.get("freightPrice"), 0),  # type: ignore[arg-type]
            buyer_fee_fen=tax,  # type: ignore[arg-type]
            paid_fen=required(fen(o.get("orderPayment")), "orderPayment") + fen(o.get("balanceUsed"), 0),
        ),
        promotions=promotions,
        fees=fees,
        shipments=shipments,
    )
