"""A hand-written WeChat Channels (视频号小店) → canonical order translator: the yardstick for the
compiled dictionary.

It does the same work as ``mappings/platforms/wechat_channels.toml`` compiled (same fields, same
values, same checks a careful person keeps: int fen checked to be whole, ids kept exact, Unix
seconds as +08:00, required fields present, status codes in the table), written directly against
the msgspec Structs of ``schemas/order.py``. It is not a second mapper for production: it exists
so ``bench/mapping.py`` can say how much the dictionary compiler costs over plain Python.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from handwritten_common import carrier_lookup, either, ident, integer, nonneg, pii_state, raw, required, unix_time

# Text is normalised as everywhere in the gateway (NFKC, zero-width characters, white space).
from gateway.mapping.transforms import normalize_text as _text
from gateway.regions import normalise
from schemas.order import (
    Buyer,
    CanonicalOrder,
    Line,
    LineRefund,
    Promotion,
    Receiver,
    Shipment,
    ShipmentLine,
    Spec,
    Totals,
)

STATUS = {
    10: "PENDING_PAYMENT",
    12: "PAID_HOLD",
    13: "PAID_HOLD",
    20: "READY_TO_SHIP",
    21: "PARTIALLY_SHIPPED",
    30: "SHIPPED",
    100: "COMPLETED",
    200: "CLOSED_REFUNDED",
    250: "CANCELLED",
}
HOLD = {12: "NO_RECEIVER", 13: "GROUP_BUY_PENDING"}
HELD_BY_ADDRESS_REVIEW = {12, 13, 20, 21}  # not shipped yet: a pending address change holds them
PAY_LATER = {2}  # 先用后付

# The same value table the dictionary looks carriers up in.
_carrier = carrier_lookup("wechat_channels")


def _bool(v: Any) -> bool | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "y", "0", "false", "no", "n"):
        return v.strip().lower() in ("1", "true", "yes", "y")
    raise ValueError(f"not a boolean: {v!r}")


def _first(d: dict[str, Any], *keys: str) -> Any:
    return either(*(d.get(k) for k in keys))


def _line_id(p: dict[str, Any]) -> str:
    return f"{required(ident(p.get('product_id')), 'product_id')}:{required(ident(p.get('sku_id')), 'sku_id')}"


def _paid(p: dict[str, Any], line_total: int) -> int:
    """What the line paid: real_price (after discounts and price changes), else estimate_price."""
    paid = integer(_first(p, "real_price", "estimate_price"))
    return line_total if paid is None else paid


def _refund(p: dict[str, Any], paid: int, qty: int) -> LineRefund:
    """From the units in after-sale (in progress) and through it (refunded, pro rata of paid)."""
    on = integer(p.get("on_aftersale_sku_cnt")) or 0
    finish = integer(p.get("finish_aftersale_sku_cnt")) or 0
    state = "IN_PROGRESS" if on else "REFUNDED" if finish else "NONE"
    amount = None
    if state == "REFUNDED" and qty:
        amount = int(Decimal(str(paid * finish / qty)).to_integral_value(ROUND_HALF_UP))
    return LineRefund(
        state=state,  # type: ignore[arg-type]
        qty=nonneg(on + finish, "aftersale count") if on or finish else None,
        amount_fen=nonneg(amount, "refund amount"),
    )


def _line(p: dict[str, Any]) -> Line:
    qty = nonneg(required(integer(p.get("sku_cnt")), "sku_cnt"), "sku_cnt")
    unit = nonneg(required(integer(p.get("sale_price")), "sale_price"), "sale_price")
    total = nonneg(unit * qty, "line total")  # type: ignore[operator]
    paid = _paid(p, total)  # type: ignore[arg-type]
    return Line(
        line_id=_line_id(p),
        product_id=ident(p.get("product_id")),
        sku_id=ident(p.get("sku_id")),
        merchant_sku=_text(_first(p, "sku_code", "out_sku_id")),
        title=_text(p.get("title")),
        spec=[
            Spec(name=_text(a.get("attr_key")), value=value)
            for a in p.get("sku_attrs") or []
            if (value := _text(a.get("attr_value")))
        ],
        qty=qty,  # type: ignore[arg-type]
        unit_price_fen=unit,  # type: ignore[arg-type]
        line_total_fen=total,  # type: ignore[arg-type]
        discount_fen=total - paid,  # type: ignore[operator]
        discount_source="platform",
        paid_fen=paid,
        is_gift=bool(_bool(p.get("is_free_gift"))),
        refund=_refund(p, paid, qty),  # type: ignore[arg-type]
    )


def _promotions(detail: dict[str, Any], products: list[dict[str, Any]]) -> list[Promotion]:
    out = []
    user_coupon_id = ident((detail.get("coupon_info") or {}).get("user_coupon_id"))
    if user_coupon_id:
        # The order's coupon, whole: the sum of the lines' shares of it.
        amount = sum(
            integer(c.get("discounted_price")) or 0
            for p in products
            for c in p.get("order_product_coupon_info_list") or []
            if ident(c.get("user_coupon_id")) == user_coupon_id
        )
        out.append(Promotion(promo_id=user_coupon_id, kind="coupon", funded_by="seller", amount_fen=amount))
    finder = integer((detail.get("price_info") or {}).get("finder_discounted_price"))
    if finder:
        out.append(Promotion(name="达人优惠", kind="other", funded_by="talent", amount_fen=finder))
    return out


def _shipments(parcels: list[dict[str, Any]]) -> list[Shipment]:
    out = []
    for p in parcels:
        waybill = _text(p.get("waybill_id"))
        if not waybill:
            continue
        code = _text(p.get("delivery_id"))
        out.append(
            Shipment(
                carrier=_carrier(code),
                carrier_platform_code=code,
                carrier_name=_text(p.get("delivery_name")),
                waybill_no=waybill,
                shipped_at=unix_time(p.get("delivery_time")),
                lines=[
                    ShipmentLine(
                        line_id=_line_id(i),
                        qty=nonneg(required(integer(i.get("product_cnt")), "product_cnt"), "product_cnt"),  # type: ignore[arg-type]
                    )
                    for i in p.get("product_infos") or []
                ],
            )
        )
    return out


def handwritten_wechat_channels(payload: dict[str, Any]) -> CanonicalOrder:
    """``/channels/ec/order/get`` response → canonical order, as the WeChat Channels dictionary does."""
    o = payload["order"]
    detail = o.get("order_detail") or {}
    price = detail.get("price_info") or {}
    pay = detail.get("pay_info") or {}
    delivery = detail.get("delivery_info") or {}
    addr = delivery.get("address_info") or {}
    ext = detail.get("ext_info") or {}

    code = required(integer(o.get("status")), "status")
    status = STATUS[code]  # an unknown status is an error
    under_review = bool(delivery.get("address_under_review"))
    review_hold = under_review and code in HELD_BY_ADDRESS_REVIEW
    hold = HOLD.get(code)
    updated = unix_time(o.get("update_time"))

    name = raw(addr.get("user_name"))
    ext_tel = addr.get("tel_number_ext_info") or {}
    phone = raw(
        either(
            addr.get("tel_number"),
            addr.get("virtual_order_tel_number"),
            ext_tel.get("virtual_tel_number"),
            ext_tel.get("real_tel_number"),
        )
    )
    street_detail, house = raw(addr.get("detail_info")), raw(addr.get("house_number"))
    address = f"{street_detail} {house}" if street_detail and house else street_detail or house
    region = normalise(_text(addr.get("province_name")), _text(addr.get("city_name")), _text(addr.get("county_name")))

    products = detail.get("product_infos") or []
    lines = [_line(p) for p in products]
    shipments = _shipments(delivery.get("delivery_product_info") or [])
    goods = nonneg(required(integer(price.get("product_price")), "product_price"), "product_price")
    freight = nonneg(integer(price.get("freight")) or 0, "freight")
    paid = nonneg(required(integer(price.get("order_price")), "order_price"), "order_price")
    seller = integer(price.get("merchant_discounted_price"))
    if seller is None:
        shares = [v for p in products if (v := integer(p.get("merchant_discounted_price"))) is not None]
        seller = sum(shares) if shares else None

    return CanonicalOrder(
        platform="wechat_channels",
        order_id=required(ident(o.get("order_id")), "order_id"),
        status="PAID_HOLD" if review_hold else status,  # type: ignore[arg-type]
        platform_status=str(code) + ("/address_under_review" if under_review else ""),
        hold_reasons=([hold] if hold else []) + (["ADDRESS_CHANGE_PENDING"] if review_hold else []),  # type: ignore[list-item]
        created_at=unix_time(o.get("create_time")),
        paid_at=None if integer(pay.get("payment_method")) in PAY_LATER else unix_time(pay.get("pay_time")),
        updated_at=updated,
        shipped_at=shipments[0].shipped_at if shipments else None,
        completed_at=unix_time(ext.get("confirm_receipt_time")),
        platform_version=updated,
        buyer=Buyer(platform_uid=ident(o.get("openid")), message=raw(ext.get("customer_notes"))),
        seller_memo=raw(ext.get("merchant_notes")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=pii_state(name, phone, address),  # type: ignore[arg-type]
            province=region.province,
            city=region.city,
            district=region.district,
            street=region.town,
            detail=address,
            postal_code=_text(addr.get("postal_code")),
            division_codes=region.codes or None,
        ),
        lines=lines,
        totals=Totals(
            goods_fen=goods,  # type: ignore[arg-type]
            discount_fen=goods + freight - paid,  # type: ignore[operator]
            seller_discount_fen=seller,
            freight_fen=freight,  # type: ignore[arg-type]
            paid_fen=paid,  # type: ignore[arg-type]
            refunded_fen=sum(ln.refund.amount_fen or 0 for ln in lines if ln.refund.state == "REFUNDED"),
        ),
        promotions=_promotions(detail, products),
        shipments=shipments,
    )
