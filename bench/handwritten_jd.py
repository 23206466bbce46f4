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

import re
import tomllib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

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

_CST = timezone(timedelta(hours=8), "Asia/Shanghai")
_HUNDRED = Decimal(100)
_CIPHER = re.compile(r"^(~.*~|##.*##|\$.*\$)$", re.S)

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

# The same value table the dictionary looks carriers up in, read once.
_CARRIERS: dict[str, str] = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "mappings" / "values" / "platforms.toml").read_text(encoding="utf-8")
)["carriers"]["jd"]


def _raw(v: Any) -> str | None:
    return (v.strip() or None) if isinstance(v, str) else _text(v)


def _id(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str):
        return v.strip() or None
    raise ValueError(f"not an id: {v!r}")


def _fen(v: Any, default: int | None = None) -> int | None:
    """Yuan (text or number) → fen, exactly."""
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"not an amount: {v!r}")
    d = Decimal(v.strip().replace(",", "") if isinstance(v, str) else repr(v) if isinstance(v, float) else v)
    f = d * _HUNDRED
    if f != f.to_integral_value():
        raise ValueError(f"amount {v!r} has fractions of a fen")
    return int(f)


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        return int(v.strip())
    raise ValueError(f"not a whole number: {v!r}")


def _time(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"not a time: {v!r}")
    v = v.strip()
    if not v or v.startswith(("0001-01-01", "1970-01-01", "0000-00-00")):
        return None
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_CST)
    return dt.isoformat(timespec="seconds")


def _first(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = d.get(k)
        if v is not None and v != "":
            return v
    return None


def _pii_state(*values: str | None) -> str:
    present = [v.strip() for v in values if v and v.strip()]
    if not present:
        return "absent"
    if any(_CIPHER.match(v) for v in present):
        return "encrypted"
    return "masked" if any("*" in v for v in present) else "plain"


def _region_id(v: Any) -> str | None:
    """A platform region id; "0" means none."""
    i = _id(v)
    return None if i == "0" else i


def _strip_prefixes(text: str | None, *prefixes: str | None) -> str | None:
    """``text`` without the given prefixes at its start, in order, each at most once."""
    if text is None:
        return None
    for p in prefixes:
        if p and text.startswith(p):
            text = text[len(p) :]
    return text.strip() or None


def _required(v: Any, name: str) -> Any:
    if v is None:
        raise ValueError(f"{name} is missing")
    return v


def _allocate(total: int, weights: list[int]) -> list[int]:
    """Largest remainder: shares rounded down, the fen left over to the largest remainders (the
    earlier line on a tie); all weights zero → evenly."""
    n = len(weights)
    if n == 0 or not total:
        return [0] * n
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError(f"cannot allocate {total} over {weights}")
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * n, n
    shares = [total * w // whole for w in weights]
    order = sorted(range(n), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _carrier(logistics_id: str | None) -> str | None:
    if logistics_id is None:
        return None
    code = _CARRIERS.get(logistics_id, _CARRIERS.get("*"))
    if code is None:
        raise ValueError(f"no entry for {logistics_id!r} in value table carriers.jd")
    return code or None


def _promotion(c: dict[str, Any], order_id: str) -> Promotion:
    ctype = _text(c.get("couponType"))
    sku = _id(c.get("skuId"))
    if sku is None and ctype in SKU_COUPONS:
        raise ValueError(f"coupon type {ctype} names no skuId")
    name, kind, funded_by = COUPONS.get(ctype or "", (None, "other", "unknown"))
    return Promotion(
        name=name or f"couponType={ctype}",
        kind=kind,  # type: ignore[arg-type]
        funded_by=funded_by,  # type: ignore[arg-type]
        amount_fen=_required(_fen(c.get("couponPrice")), "couponPrice"),
        scope="line" if sku else "order",
        line_id=f"{order_id}:{sku}" if sku else None,
    )


def handwritten_jd(payload: dict[str, Any]) -> CanonicalOrder:
    """``jingdong.pop.order.get`` response → canonical order, as the JD dictionary does."""
    o = payload["jingdong_pop_order_get_responce"]["orderDetailInfo"]["orderInfo"]
    order_id = _required(_id(o.get("orderId")), "orderId")
    consignee = o.get("consigneeInfo") or {}
    items = o.get("itemInfoList") or []
    coupons = o.get("couponDetailList") or []

    name = _raw(consignee.get("fullname"))
    phone = _text(_first(consignee, "mobile", "telephone", "desen_mobile"))
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
            ("province", _region_id(consignee.get("provinceId"))),
            ("city", _region_id(consignee.get("cityId"))),
            ("district", _region_id(consignee.get("countyId"))),
            ("street", _region_id(consignee.get("townId"))),
        )
        if v
    }

    state = _required(_text(o.get("orderState")), "orderState")
    base = STATUS[state]
    paid_at = _time(o.get("paymentConfirmTime"))
    holds = [HOLD[state]] if state in HOLD else []
    if base in RECEIVER_NEEDED and not (name or phone or detail):
        holds.append("NO_RECEIVER")
    status = (AFTER_PAYMENT.get(state) if paid_at else None) or ("PAID_HOLD" if holds else base)

    promotions = [_promotion(c, order_id) for c in coupons]
    discount = sum(p.amount_fen for p in promotions)
    own: dict[str, int] = {}  # 单品 coupons by SKU
    for c in coupons:
        sku = _id(c.get("skuId"))
        if sku:
            own[sku] = own.get(sku, 0) + _required(_fen(c.get("couponPrice")), "couponPrice")

    lines: list[Line] = []
    ship_lines: list[ShipmentLine] = []
    nets = []
    for it in items:
        sku = _required(_id(it.get("skuId")), "skuId")
        qty = _required(_int(it.get("itemTotal")), "itemTotal")
        price = _required(_fen(it.get("jdPrice")), "jdPrice")
        nets.append(price * qty - own.get(sku, 0))
        lines.append(
            Line(
                line_id=f"{order_id}:{sku}",
                product_id=_id(it.get("wareId")),
                sku_id=sku,
                merchant_sku=_text(_first(it, "outerSkuId", "productNo")),
                title=_text(it.get("skuName")),
                qty=qty,
                unit_price_fen=price,
                line_total_fen=price * qty,
                discount_source="allocated",
                paid_fen=price * qty,
            )
        )
        ship_lines.append(ShipmentLine(line_id=f"{order_id}:{sku}", qty=qty))
    shares = _allocate(discount - sum(own.values()), nets)
    for line, share in zip(lines, shares, strict=True):
        line.discount_fen = own.get(line.sku_id, 0) + share  # type: ignore[arg-type]
        line.paid_fen = line.line_total_fen - line.discount_fen

    tax = _fen(o.get("taxFee"), 0)
    fees = [Fee(name="税费", kind="other", amount_fen=tax, payer="buyer")] if tax > 0 else []  # type: ignore[operator]
    shipments = []
    waybill = _text(o.get("waybill"))
    if waybill:
        code = _id(o.get("logisticsId"))
        shipments.append(
            Shipment(waybill_no=waybill, carrier_platform_code=code, carrier=_carrier(code), lines=ship_lines)
        )
    modified = _time(o.get("modified"))
    return CanonicalOrder(
        platform="jd",
        order_id=order_id,
        status=status,  # type: ignore[arg-type]
        platform_status=state,
        hold_reasons=holds,  # type: ignore[arg-type]
        created_at=_time(o.get("orderStartTime")),
        paid_at=paid_at,
        updated_at=modified,
        completed_at=_time(o.get("orderEndTime")),
        platform_version=modified,
        buyer=Buyer(
            platform_uid=_id(o.get("open_id_buyer")),
            nick=_raw(o.get("pin")),
            message=_raw(o.get("orderRemark")),
        ),
        seller_memo=_raw(o.get("venderRemark")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=_pii_state(name, phone),  # type: ignore[arg-type]
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
            goods_fen=_required(_fen(o.get("orderTotalPrice")), "orderTotalPrice"),
            discount_fen=discount,
            seller_discount_fen=_fen(o.get("sellerDiscount")),
            freight_fen=_fen(o.get("freightPrice"), 0),  # type: ignore[arg-type]
            buyer_fee_fen=tax,  # type: ignore[arg-type]
            paid_fen=_required(_fen(o.get("orderPayment")), "orderPayment") + _fen(o.get("balanceUsed"), 0),
        ),
        promotions=promotions,
        fees=fees,
        shipments=shipments,
    )
