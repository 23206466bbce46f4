"""A hand-written Douyin (抖店) → canonical order translator: the yardstick for the compiled dictionary.

It does the same work as ``mappings/platforms/douyin.toml`` compiled (same fields, same values, same
checks a careful person keeps: int fen checked to be whole, ids above 2^53 kept exact, Unix seconds
as +08:00, required fields present, status codes in the table), written directly against the
msgspec Structs of ``schemas/order.py``. It is not a second mapper for production: it exists so
``bench/mapping.py`` can say how much the dictionary compiler costs over plain Python.
"""

from __future__ import annotations

from typing import Any

from handwritten_common import carrier_lookup, either, ident, integer, nonneg, pii_state, raw, required, unix_time

# Text is normalised as everywhere in the gateway (NFKC, zero-width characters, white space).
from gateway.mapping.transforms import as_bool
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

STATUS = {
    1: "PENDING_PAYMENT",
    105: "PAID_HOLD",
    2: "READY_TO_SHIP",
    101: "PARTIALLY_SHIPPED",
    3: "SHIPPED",
    5: "COMPLETED",
    4: "CANCELLED",
}
# (order_status, main_status) pairs that override order_status, and main_status alone.
STATUS_PAIR = {(4, 21): "CLOSED_REFUNDED", (4, 22): "CLOSED_REFUNDED", (4, 39): "CLOSED_REFUNDED"}
STATUS_MAIN = {103: "PENDING_PAYMENT"}
HOLD = {105: "RISK_REVIEW"}
PAY_LATER = {0, 12}  # 货到付款, 先用后付
REFUND = {0: "NONE", 1: "IN_PROGRESS", 2: "IN_PROGRESS", 3: "REFUNDED", 4: "REJECTED"}
AFTER_SALE = {6: "REQUESTED", 27: "REJECTED", 28: "CLOSED", 29: "REJECTED"}
CAMPAIGN_KIND = {100: "full_reduction", 110: "full_reduction", 150: "item_discount"}
# promotion_detail blocks in output order, with the party that funds them unless
# share_discount_cost says one party bears it all; the platform's gold coin amount follows its lists.
_BLOCKS = [
    ("shop_discount_detail", "seller"),
    ("platform_discount_detail", "platform"),
    ("kol_discount_detail", "talent"),
]

# The same value table the dictionary looks carriers up in.
_carrier = carrier_lookup("douyin")


def _first(d: dict[str, Any], *keys: str) -> Any:
    return either(*(d.get(k) for k in keys))


def _dig(d: dict[str, Any], *paths: tuple[str, ...]) -> Any:
    """The first path that gives a value; later paths are read only when needed (post_addr, then
    mask_post_addr)."""
    for path in paths:
        v: Any = d
        for k in path:
            v = None if v is None else v.get(k)
        if v is not None and v != "":
            return v
    return None


def _refund_state(sku: dict[str, Any]) -> str:
    info = sku.get("after_sale_info") or {}
    refund_status = integer(info.get("refund_status"))
    by_refund = None if refund_status is None else REFUND[refund_status]
    if by_refund == "REFUNDED":
        return by_refund
    after_sale = integer(info.get("after_sale_status"))
    return AFTER_SALE.get(after_sale) or by_refund or "NONE"  # type: ignore[arg-type]


def _line(sku: dict[str, Any]) -> Line:
    qty = nonneg(required(integer(sku.get("item_num")), "item_num"), "item_num")
    unit = nonneg(required(integer(sku.get("origin_amount")), "origin_amount"), "origin_amount")
    total = nonneg(unit * qty, "line total")  # type: ignore[operator]
    # The platform's per-SKU discount and payment, kept apart so that AMOUNT_MISMATCH can compare them.
    discount = (integer(sku.get("promotion_amount")) or 0) + (integer(sku.get("promotion_pay_amount")) or 0)
    pay = required(integer(sku.get("pay_amount")), "pay_amount")
    paid = pay - (integer(sku.get("post_amount")) or 0)
    state = _refund_state(sku)
    return Line(
        line_id=required(ident(sku.get("order_id")), "order_id"),
        product_id=ident(_first(sku, "product_id_str", "product_id")),
        sku_id=ident(sku.get("sku_id")),
        merchant_sku=_text(_first(sku, "out_sku_id", "code")),
        title=_text(sku.get("product_name")),
        spec=[
            Spec(name=_text(s.get("name")), value=value)
            for s in sku.get("spec") or []
            if (value := _text(s.get("value")))
        ],
        qty=qty,  # type: ignore[arg-type]
        unit_price_fen=unit,  # type: ignore[arg-type]
        line_total_fen=total,  # type: ignore[arg-type]
        discount_fen=discount,
        discount_source="platform",
        paid_fen=paid,
        is_gift=_text(sku.get("given_product_type")) == "FREE",
        refund=LineRefund(state=state, amount_fen=nonneg(pay, "pay_amount") if state == "REFUNDED" else None),  # type: ignore[arg-type]
    )


def _funded_by(entry: dict[str, Any], amount: int, own: str) -> str:
    """The party bearing the whole cost in share_discount_cost, else the block's own funder."""
    cost = entry.get("share_discount_cost") or {}
    bearers = {
        "seller": integer(cost.get("shop_cost")),
        "platform": integer(cost.get("platform_cost")),
        "talent": integer(cost.get("author_cost")),
    }
    for party in (own, *(p for p in ("seller", "platform", "talent") if p != own)):
        if bearers[party] == amount:
            return party
    return own


def _promotions(detail: dict[str, Any]) -> list[Promotion]:
    out = []
    for block, own in _BLOCKS:
        d = detail.get(block) or {}
        for c in d.get("coupon_info") or []:
            amount = integer(c.get("coupon_amount")) or 0
            out.append(
                Promotion(
                    promo_id=ident(c.get("coupon_id")),
                    name=_text(c.get("coupon_name")),
                    kind="coupon",
                    funded_by=_funded_by(c, amount, own),  # type: ignore[arg-type]
                    amount_fen=amount,
                )
            )
        for f in d.get("full_discount_info") or []:
            amount = integer(f.get("campaign_amount")) or 0
            campaign_type = integer(f.get("campaign_type"))
            out.append(
                Promotion(
                    promo_id=ident(f.get("campaign_id")),
                    name=_text(f.get("campaign_name")),
                    kind=CAMPAIGN_KIND.get(campaign_type, "full_reduction"),  # type: ignore[arg-type]
                    funded_by=_funded_by(f, amount, own),  # type: ignore[arg-type]
                    amount_fen=amount,
                )
            )
        for r in d.get("redpack_info") or []:
            amount = integer(r.get("redpack_amount")) or 0
            out.append(
                Promotion(
                    promo_id=ident(r.get("redpack_trans_id")),
                    kind="redpack",
                    funded_by=_funded_by(r, amount, own),  # type: ignore[arg-type]
                    amount_fen=amount,
                )
            )
        if block == "platform_discount_detail" and (gold := integer(d.get("gold_coin_amount"))):
            out.append(Promotion(name="金币抵扣", kind="points", funded_by="platform", amount_fen=gold))
    return out


def _shipments(parcels: list[dict[str, Any]]) -> list[Shipment]:
    out = []
    for p in parcels:
        waybill = _text(p.get("tracking_no"))
        if not waybill:
            continue
        company = _text(p.get("company"))
        out.append(
            Shipment(
                carrier=_carrier(company),
                carrier_platform_code=company,
                carrier_name=_text(p.get("company_name")),
                waybill_no=waybill,
                shipped_at=unix_time(p.get("ship_time")),
                lines=[
                    ShipmentLine(
                        line_id=required(ident(i.get("sku_order_id")), "sku_order_id"),
                        qty=nonneg(required(integer(i.get("product_count")), "product_count"), "product_count"),  # type: ignore[arg-type]
                    )
                    for i in p.get("product_info") or []
                ],
            )
        )
    return out


def _region_codes(o: dict[str, Any]) -> dict[str, str] | None:
    """The platform's own region ids, for the levels that have one ("0" is none)."""
    ids = {}
    for key, level in (("province", "province"), ("city", "city"), ("district", "town"), ("street", "street")):
        code = ident(_dig(o, ("post_addr", level, "id"), ("mask_post_addr", level, "id")))
        if code and code != "0":
            ids[key] = code
    return ids or None


def _presale(phases: list[dict[str, Any]]) -> Presale | None:
    """定金预售 stage orders (order_phase_list): stage 1 is the deposit; a stage not paid is open."""
    if not phases:
        return None
    deposit = balance = paid = open_phases = open_deposits = 0
    for ph in phases:
        phase = required(integer(ph.get("current_phase")), "current_phase")
        done = as_bool(ph.get("pay_success")) or False
        amount = integer(ph.get("phase_pay_amount")) or 0
        if phase == 1:
            deposit += amount
            open_deposits += not done
        else:
            balance += amount
        paid += amount if done else 0
        open_phases += not done
    return Presale(
        stage="deposit_unpaid" if open_deposits else ("deposit_paid" if open_phases else "balance_paid"),
        deposit_fen=deposit,
        balance_fen=balance,
        paid_fen=paid,
        balance_paid=open_phases == 0,
    )


def handwritten_douyin(payload: dict[str, Any]) -> CanonicalOrder:
    """``order.orderDetail`` response → canonical order, as the Douyin dictionary does."""
    o = payload["data"]["shop_order_detail"]
    order_status = required(integer(o.get("order_status")), "order_status")
    main_status = integer(o.get("main_status"))
    status = STATUS[order_status]  # an unknown order_status is an error, whatever main_status says
    status = STATUS_PAIR.get((order_status, main_status)) or STATUS_MAIN.get(main_status) or status  # type: ignore[arg-type]
    hold = HOLD.get(order_status)
    updated = unix_time(o.get("update_time"))

    name = raw(_first(o, "post_receiver", "encrypt_post_receiver", "mask_post_receiver"))
    phone = raw(_first(o, "post_tel", "encrypt_post_tel", "mask_post_tel"))
    detail = raw(_dig(o, ("post_addr", "detail"), ("post_addr", "encrypt_detail"), ("mask_post_addr", "detail")))

    def level(key: str) -> str | None:
        return _text(_dig(o, ("post_addr", key, "name"), ("mask_post_addr", key, "name")))

    region = normalise(level("province"), level("city"), level("town"))

    skus = o.get("sku_order_list") or []
    lines = [_line(s) for s in skus]
    # goods from each SKU's own sum_amount, not from the lines: AMOUNT_MISMATCH compares the two.
    goods = 0
    for s in skus:
        sum_amount = integer(s.get("sum_amount"))
        goods += sum_amount if sum_amount is not None else integer(s.get("origin_amount")) * integer(s.get("item_num"))  # type: ignore[operator]
    discount = (integer(o.get("promotion_amount")) or 0) + (integer(o.get("promotion_pay_amount")) or 0)
    freight = nonneg(integer(o.get("post_amount")) or 0, "post_amount")
    paid = nonneg(required(integer(o.get("pay_amount")), "pay_amount"), "pay_amount")
    platform_cost = integer(_first(o, "platform_cost_amount", "promotion_platform_amount"))
    platform_discount = integer(o.get("only_platform_cost_amount"))
    if platform_discount is None and platform_cost is not None:
        platform_discount = platform_cost - (integer(o.get("author_cost_amount")) or 0)
    refunded = sum(integer(s.get("pay_amount")) or 0 for s in skus if _refund_state(s) == "REFUNDED")

    return CanonicalOrder(
        platform="douyin",
        shop_id=ident(o.get("shop_id")),
        shop_name=_text(o.get("shop_name")),
        order_id=required(ident(o.get("order_id")), "order_id"),
        status=status,  # type: ignore[arg-type]
        platform_status=f"order_status={order_status}"
        + (f"/main_status={main_status}" if main_status is not None else ""),
        hold_reasons=[hold] if hold and status == "PAID_HOLD" else [],  # type: ignore[list-item]
        created_at=unix_time(o.get("create_time")),
        paid_at=None if integer(o.get("pay_type")) in PAY_LATER else unix_time(o.get("pay_time")),
        updated_at=updated,
        shipped_at=unix_time(o.get("ship_time")),
        completed_at=unix_time(o.get("finish_time")),
        platform_version=updated,
        buyer=Buyer(platform_uid=ident(o.get("doudian_open_id")), message=raw(o.get("buyer_words"))),
        seller_memo=raw(o.get("seller_words")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=pii_state(name, phone, detail),  # type: ignore[arg-type]
            province=region.province,
            city=region.city,
            district=region.district,
            street=level("street") or region.town,
            detail=detail,
            region_codes=_region_codes(o),
            division_codes=region.codes or None,
        ),
        lines=lines,
        totals=Totals(
            goods_fen=goods,
            discount_fen=discount,
            seller_discount_fen=integer(_first(o, "shop_cost_amount", "promotion_shop_amount")),
            platform_discount_fen=platform_discount,
            freight_fen=freight,  # type: ignore[arg-type]
            paid_fen=paid,  # type: ignore[arg-type]
            refunded_fen=refunded,
        ),
        promotions=_promotions(o.get("promotion_detail") or {}),
        shipments=_shipments(o.get("logistics_info") or []),
        presale=_presale(o.get("order_phase_list") or []),
    )
