"""Shipments read back from K3 WISE (reference/erp-protocols.md §4): the rows of a
``Delivery_Notice`` (发货通知, DB ``SEOutStock``) or ``Sales_Delivery`` (销售出库, ``ICStockBill``
FTranType=21) ``GetList``, grouped into one ``ErpShipment`` per bill and SO. Pure functions.

A list row is one entry of a bill with its header columns repeated; the entry names the SO it
ships through ``FOrderBillNo`` (D3) or ``FSourceBillNo`` (K2). Dates are the site's local time
without a zone (China Standard Time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from adapters.k3.k3json import field, number_of
from gateway.ports import ErpShipment, ErpShipmentLine

CHINA = ZoneInfo("Asia/Shanghai")
#: Where a shipment line names the SO it ships (§4): 销售出库 lines carry FOrderBillNo (D3),
#: 发货通知 lines FSourceBillNo (K2).
LINK_FIELDS = {"Sales_Delivery": "FOrderBillNo", "Delivery_Notice": "FSourceBillNo"}


@dataclass(frozen=True)
class ShipmentFields:
    """Header fields of a site's shipment bills that hold the waybill number and the carrier:
    custom fields (``FHeadSelfB0436``…) that differ per site, so they come from the target's options."""

    waybill: str | None = None
    carrier: str | None = None


def group_shipments(
    obj: str, link: str, rows: list[dict[str, Any]], wanted: dict[str, str], *, fields: ShipmentFields
) -> list[ErpShipment]:
    """One shipment per (bill, SO) among ``rows``; ``wanted`` maps a case-folded SO number to our
    document code. ``shipment_no`` is ``"{object}:{FBillNo}"``: a notice and an outbound bill may
    share a number."""
    bills: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        code = wanted.get(str(field(row, link) or "").strip().casefold())
        if code is not None:  # the filter should have kept only ours; a site's SQL may be looser
            bills.setdefault((str(field(row, "FBillNo") or ""), code), []).append(row)
    out = []
    for (bill_no, code), lines in bills.items():
        head = lines[0]
        out.append(
            ErpShipment(
                document_code=code,
                shipment_no=f"{obj}:{bill_no}",
                shipped_at=local_time(field(head, "Fdate")),
                carrier=_opt(field(head, fields.carrier)) if fields.carrier else None,
                waybill_no=_opt(field(head, fields.waybill)) if fields.waybill else None,
                lines=[_line(r) for r in lines],
            )
        )
    return out


def local_time(value: Any) -> datetime | None:
    """A K3 date (local, no zone) as a UTC time; None when it is not a date."""
    text = str(value or "").strip()
    for fmt, width in (("%Y-%m-%d %H:%M:%S", 19), ("%Y-%m-%dT%H:%M:%S", 19), ("%Y-%m-%d", 10)):
        try:
            return datetime.strptime(text[:width], fmt).replace(tzinfo=CHINA).astimezone(UTC)
        except ValueError:
            continue
    return None


def _line(row: dict[str, Any]) -> ErpShipmentLine:
    try:
        qty = Decimal(str(field(row, "Fauxqty") or field(row, "FQty") or "0"))
    except InvalidOperation:
        qty = Decimal(0)
    entry = field(row, "FOrderEntryID")
    return ErpShipmentLine(
        item_code=number_of(field(row, "FItemID")),
        qty=int(qty),
        row=int(entry) if isinstance(entry, int) or (isinstance(entry, str) and entry.isdigit()) else None,
    )


def _opt(value: Any) -> str | None:
    return number_of(value) or None
