"""U8 发货单 (consignments, ``roottag="consignment"``) read back through EAI ``proc="query"``
(erp-protocols.md §1.8, §4): the shipments U8 holds against our sale orders.

Tag names follow the Yonyou template (T, ``Consignment.xml``): header ``code`` (cDLCode),
``date``, ``returnflag``; lines ``inventory_code``, ``quantity``, ``cordercode`` (订单号) and
``iorderrowno`` (订单行号). Where a WMS or a U8 user records the carrier and the waybill is not
in the template: the defaults are ``shippingchoice`` (T: 发运方式编码) and ``cebexpresscode``
(inferred from the DispatchList column cEBExpressCode, D1). Sites differ, so every tag name here
is a setting (``ShipmentTags``, from the target's ``options``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from adapters.u8.eai_xml import build_field_query
from gateway.ports import ErpShipment, ErpShipmentLine

#: U8 keeps calendar days in the account set's local time (mainland China).
U8_ZONE = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class ShipmentTags:
    """Where a site's 发货单 keep what the gateway reads (all lower-case EAI names except
    ``order_field``, which names the query condition's column as §1.8 queries do).

    Attributes:
        order_field: The query condition's field naming the sale order (a line's 订单号).
        order: The line tag holding the sale order code.
        order_row: The line tag holding the sale order's row number.
        item: The line tag holding the inventory code.
        quantity: The line tag holding the quantity shipped.
        carrier: The tag (header first, then the lines) with the carrier (inferred default).
        waybill: The tag (header first, then the lines) with the waybill number (inferred default).
        batch: How many sale order codes one query names.
    """

    order_field: str = "cordercode"
    order: str = "cordercode"
    order_row: str = "iorderrowno"
    item: str = "inventory_code"
    quantity: str = "quantity"
    carrier: str = "shippingchoice"
    waybill: str = "cebexpresscode"
    batch: int = 20

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ShipmentTags:
        """The tags named in a target's ``options`` as ``shipment_<attribute>`` keys."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            key = f"shipment_{name}"
            if key in options:
                values[name] = options[key]
        tags = cls(**values)
        if not isinstance(tags.batch, int) or isinstance(tags.batch, bool) or not 1 <= tags.batch <= 500:
            raise ValueError("shipment_batch must be an integer from 1 to 500")
        for name in cls.__dataclass_fields__:
            value = getattr(tags, name)
            if name != "batch" and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"shipment_{name} must be a non-empty tag name")
        return tags


def batches(codes: Sequence[str], size: int) -> list[list[str]]:
    """``codes`` (deduplicated, order kept) in slices of ``size``."""
    unique = list(dict.fromkeys(c for c in codes if c))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def build_consignment_query(codes: Sequence[str], *, sender: str, tags: ShipmentTags) -> bytes:
    """One query for the 发货单 whose lines name any of ``codes``: ``=`` conditions joined by
    ``or`` (§1.8 ``logic``). No date condition: its precedence against ``or`` is unknown, so the
    date is checked here on the reply instead."""
    fields = [(tags.order_field, "=", code, "or" if i else "") for i, code in enumerate(codes)]
    return build_field_query("consignment", fields, sender=sender)


def shipments_of(
    records: Iterable[dict[str, Any]], codes: Sequence[str], *, since: datetime, tags: ShipmentTags
) -> list[ErpShipment]:
    """One ``ErpShipment`` per (发货单, sale order of ``codes`` it ships), for 发货单 dated on or after
    the local day of ``since``. Returns (``returnflag`` 1) and lines of other orders are skipped:
    a query filter U8 ignores would list everything, so the codes are matched here."""
    wanted = {c.casefold(): c for c in codes}
    first_day = since.astimezone(U8_ZONE).date()
    found: list[ErpShipment] = []
    for record in records:
        number = _text(record.get("code"))
        if number is None or _text(record.get("returnflag")) in ("1", "true", "True"):
            continue
        day = _day(record.get("date"))
        if day is not None and day < first_day:
            continue
        lines = [line for line in record.get("lines") or [] if isinstance(line, dict)]
        by_order: dict[str, list[ErpShipmentLine]] = {}
        for line in lines:
            order = wanted.get((_text(line.get(tags.order)) or "").casefold())
            if order is not None:
                by_order.setdefault(order, []).append(_line(line, tags))
        carrier = _first(record, lines, tags.carrier)
        waybill = _first(record, lines, tags.waybill)
        shipped_at = datetime.combine(day, time(0), tzinfo=U8_ZONE).astimezone(UTC) if day else None
        found.extend(
            ErpShipment(
                document_code=order,
                shipment_no=number,
                shipped_at=shipped_at,
                carrier=carrier,
                waybill_no=waybill,
                lines=order_lines,
            )
            for order, order_lines in by_order.items()
        )
    return found


def _line(line: dict[str, Any], tags: ShipmentTags) -> ErpShipmentLine:
    row = _text(line.get(tags.order_row)) or ""
    return ErpShipmentLine(
        item_code=_text(line.get(tags.item)) or "",
        qty=_qty(line.get(tags.quantity)),
        row=int(row) if row.isdigit() else None,
    )


def _first(record: dict[str, Any], lines: list[dict[str, Any]], tag: str) -> str | None:
    value = _text(record.get(tag))
    if value is None:
        value = next((v for v in (_text(line.get(tag)) for line in lines) if v is not None), None)
    return value


def _qty(value: Any) -> int:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return 0
    return int(number) if number.is_finite() else 0


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value or "")[:10])
    except ValueError:
        return None
