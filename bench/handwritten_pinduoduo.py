"""A hand-written Pinduoduo → canonical order translator: the yardstick for the compiled dictionary.

It does the same work as ``mappings/platforms/pinduoduo.toml`` compiled (same fields, same values,
the same checks a careful person keeps: NFKC text, exact yuan → fen with Decimal, zone-less times
as Asia/Shanghai, required fields present, status codes in their tables, the order-level discount
spread over the goods lines by largest remainder), written directly against the msgspec Structs of
``schemas/order.py``. It is not a second mapper for production: it exists so ``bench/mapping.py``
can say how much the dictionary compiler costs over plain Python.
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
    LineRefund,
    Promotion,
    Receiver,
    Shipment,
    ShipmentLine,
    Spec,
    Totals,
)

_CST = timezone(timedelta(hours=8), "Asia/Shanghai")
_HUNDRED = Decimal(100)
_CIPHER = re.compile(r"^(~.*~|##.*##|\$.*\$)$", re.S)

STATUS = {"1": "READY_TO_SHIP", "2": "SHIPPED", "3": "COMPLETED"}
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

# The same value tables the dictionary looks carriers and fee kinds up in, read once.
_VALUES = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "mappings" / "values" / "platforms.toml").read_text(encoding="utf-8")
)
_CARRIERS: dict[str, str] = _VALUES["carriers"]["pinduoduo"]
_FEE_KINDS: dict[str, str] = _VALUES["fee_kinds"]


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
    """Yuan (number or text) → fen, exactly."""
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


def _spec(v: Any) -> list[Spec]:
    t = _text(v)
    if t is None:
        return []
    return [Spec(value=part.strip()) for part in t.split(",") if part.strip()]


def _pii_state(*values: str | None) -> str:
    present = [v.strip() for v in values if v and v.strip()]
    if not present:
        return "absent"
    if any(_CIPHER.match(v) for v in present):
        return "encrypted"
    return "masked" if any("*" in v for v in present) else "plain"


def _region_id(v: Any) -> str | None:
    """A platform region id; 0 means none."""
    i = _id(v)
    return None if i == "0" else i


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
        raise ValueError(f"no entry for {logistics_id!r} in value table carriers.pinduoduo")
    return code or None


def _fee(f: dict[str, Any]) -> Fee:
    name = _text(f.get("service_name"))
    kind = _FEE_KINDS.get(name, _FEE_KINDS.get("*")) if name is not None else None
    return Fee(
        name=name,
        kind=kind or "other",  # type: ignore[arg-type]
        amount_fen=_required(_fen(f.get("service_fee")), "service_fee"),
        payer="buyer",
    )


def _waybills(items: list[dict[str, Any]]) -> list[Shipment]:
    out = []
    for d in items:
        waybill = _text(d.get("tracking_number"))
        if waybill:
            code = _id(d.get("logistics_id"))
            out.append(Shipment(waybill_no=waybill, carrier_platform_code=code, carrier=_carrier(code)))
    return out


def handwritten_pinduoduo(payload: dict[str, Any]) -> CanonicalOrder:
    """``pdd.order.information.get`` response → canonical order, as the Pinduoduo dictionary does."""
    o = payload["order_info_get_response"]["order_info"]
    order_sn = _required(_id(o.get("order_sn")), "order_sn")
    items = o.get("item_list") or []
    gifts = o.get("gift_list") or []

    # Status: closing fields, then "not yet a deal", then risk control, then order_status.
    order_status, confirm, group, risk = (
        o.get("order_status"),
        o.get("confirm_status"),
        o.get("group_status"),
        o.get("risk_control_status"),
    )
    base = STATUS[str(_required(order_status, "order_status"))]
    paid_at = _time(o.get("pay_time"))
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
    change = _fen(o.get("order_change_amount"), 0)
    seller = _fen(o.get("seller_discount"), 0)
    platform = _fen(o.get("platform_discount"), 0)
    capital_free = _fen(o.get("capital_free_discount"), 0)
    discount_amount = _fen(o.get("discount_amount"))
    if discount_amount is None:
        discount_amount = seller + platform + capital_free  # type: ignore[operator]
    discount = discount_amount + change  # type: ignore[operator]
    fees = [_fee(f) for f in o.get("service_fee_detail") or []]

    lines: list[Line] = []
    ship_lines: list[ShipmentLine] = []
    totals = []
    for it in items:
        sku = _required(_id(it.get("sku_id")), "sku_id")
        qty = _required(_int(it.get("goods_count")), "goods_count")
        price = _required(_fen(it.get("goods_price")), "goods_price")
        totals.append(price * qty)
        lines.append(
            Line(
                line_id=f"{order_sn}:{sku}",
                product_id=_id(it.get("goods_id")),
                sku_id=sku,
                merchant_sku=_text(_first(it, "outer_id", "outer_goods_id")),
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
    for line, share in zip(lines, _allocate(discount, totals), strict=True):
        line.discount_fen = share
        line.paid_fen = line.line_total_fen - share
    for g in gifts:
        sku = _required(_id(g.get("sku_id")), "sku_id")
        qty = _required(_int(g.get("goods_count")), "goods_count")
        lines.append(
            Line(
                line_id=f"{order_sn}:{sku}:gift",
                product_id=_id(g.get("goods_id")),
                sku_id=sku,
                merchant_sku=_text(_first(g, "outer_id", "outer_goods_id")),
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
        code = _id(o.get("logistics_id"))
        shipments.append(
            Shipment(
                waybill_no=waybill,
                carrier_platform_code=code,
                carrier=_carrier(code),
                shipped_at=_time(o.get("shipping_time")),
                lines=ship_lines,
            )
        )
    for key in ("extra_delivery_list", "gift_delivery_list", "resend_delivery_list"):
        shipments += _waybills(o.get(key) or [])

    name = _raw(_first(o, "receiver_name", "receiver_name_mask"))
    phone = _text(_first(o, "receiver_phone", "receiver_phone_mask"))
    updated = _time(o.get("updated_at"))
    # PDD's town is the district; a township there (东莞/中山) becomes the street.
    region = normalise(_text(o.get("province")), _text(o.get("city")), _text(o.get("town")))
    region_ids = {
        k: v
        for k, v in (
            ("province", _region_id(o.get("province_id"))),
            ("city", _region_id(o.get("city_id"))),
            ("district", _region_id(o.get("town_id"))),
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
        created_at=_time(o.get("created_time")),
        paid_at=paid_at,
        updated_at=updated,
        shipped_at=_time(o.get("shipping_time")),
        completed_at=_time(o.get("receive_time")),
        platform_version=updated,
        buyer=Buyer(message=_raw(o.get("buyer_memo"))),
        seller_memo=_raw(o.get("remark")),
        receiver=Receiver(
            name=name,
            phone=phone,
            pii_state=_pii_state(name, phone),  # type: ignore[arg-type]
            country=_text(o.get("country")),
            province=region.province,
            city=region.city,
            district=region.district,
            division_codes=region.codes or None,
            street=region.town,
            detail=_raw(_first(o, "receiver_address", "receiver_address_mask")),
            region_codes=region_ids or None,
        ),
        lines=lines,
        totals=Totals(
            goods_fen=_required(_fen(o.get("goods_amount")), "goods_amount") + change,
            discount_fen=discount,
            seller_discount_fen=seller + change,  # type: ignore[operator]
            platform_discount_fen=platform,
            freight_fen=_fen(o.get("postage"), 0),  # type: ignore[arg-type]
            buyer_fee_fen=sum(f.amount_fen for f in fees),
            paid_fen=_required(_fen(o.get("pay_amount")), "pay_amount"),
        ),
        promotions=promotions,
        fees=fees,
        shipments=shipments,
    )
