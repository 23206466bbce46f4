"""U8+ OpenAPI read-back: a sale order by its code and the 发货单 of our orders (erp-protocols.md §2
read APIs, §4 "Status / shipment read-back").

``saleorderlist/batch_get`` filters by date range and state only (O6), so an order is found by
listing the day of its header ``date`` and matching the code here. Shipments are
``consignmentlist/batch_get`` since a day (O3), then ``consignment/get?id=`` for each one's lines,
which name the sale order they ship in ``cordercode`` (§4). A refused read says nothing about the
order, so it is an ``UnknownOutcomeError``, never "not there".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from adapters.u8.openapi_session import OpenApiSession, unknown
from gateway.ports import ErpShipment, ErpShipmentLine

#: U8 keeps calendar days in the account set's local time (mainland China).
U8_ZONE = ZoneInfo("Asia/Shanghai")
MAX_PAGES = 50  # default: a list longer than this many pages is read no further (the caller is told)


class OrderReader:
    """Reads through the list and get APIs of one relay session."""

    def __init__(self, session: OpenApiSession, *, rows_per_page: int = 200, max_pages: int = MAX_PAGES) -> None:
        self._session = session
        self._rows = max(1, min(rows_per_page, 8000))
        self._pages = max(1, max_pages)

    async def find_order(self, code: str, day: date | None) -> dict[str, Any] | None:
        """The ``saleorderlist`` row of ``code`` on ``day`` (any day when None); None when absent."""
        params = {"date_begin": day.isoformat(), "date_end": day.isoformat()} if day else {}
        async for row in self._rows_of("/api/saleorderlist/batch_get", "saleorderlist", params, code):
            if str(row.get("code", "")).strip() == code:
                return row
        return None

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """One ``ErpShipment`` per (发货单, sale order of ``codes`` it ships), oldest first."""
        wanted = {c.casefold(): c for c in codes}
        if not wanted:
            return []
        day = since.astimezone(U8_ZONE).date().isoformat()
        found: list[ErpShipment] = []
        async for row in self._rows_of("/api/consignmentlist/batch_get", "consignmentlist", {"date_begin": day}, ""):
            number = str(row.get("code") or "").strip()
            if number:
                found.extend(await self._shipment(number, wanted))
        return found

    async def _shipment(self, number: str, wanted: dict[str, str]) -> list[ErpShipment]:
        reply = await self._session.call("GET", "/api/consignment/get", code=number, params={"id": number})
        consignment = reply.get("consignment")
        if reply["errcode"] != "0" or not isinstance(consignment, dict):
            raise unknown(number, "U8 OpenAPI refused or garbled a consignment read", partner_message=reply["errmsg"])
        by_order: dict[str, list[ErpShipmentLine]] = {}
        for line in consignment.get("entry") or []:
            order = wanted.get(str(line.get("cordercode") or "").strip().casefold()) if isinstance(line, dict) else None
            if order is None:
                continue
            row = str(line.get("iorderrowno") or "").strip()
            by_order.setdefault(order, []).append(
                ErpShipmentLine(
                    item_code=str(line.get("inventorycode") or ""),
                    qty=_qty(line.get("quantity")),
                    row=int(row) if row.isdigit() else None,
                )
            )
        shipped_at = _shipped_at(consignment.get("date"))
        return [
            ErpShipment(
                document_code=order,
                shipment_no=number,
                shipped_at=shipped_at,
                carrier=_text(consignment.get("cebexpresscompany")),  # (inferred) tag names, D1 cEBExpressCode
                waybill_no=_text(consignment.get("cebexpresscode")),
                lines=lines,
            )
            for order, lines in by_order.items()
        ]

    async def _rows_of(self, path: str, key: str, params: dict[str, str], code: str):  # noqa: ANN202
        """Every row of a paged list API (an async iterator), up to ``max_pages`` pages."""
        for index in range(1, self._pages + 1):
            query = {**params, "page_index": str(index), "rows_per_page": str(self._rows)}
            reply = await self._session.call("GET", path, code=code, params=query)
            rows = reply.get(key)
            if reply["errcode"] != "0" or not isinstance(rows, list):
                raise unknown(code, f"U8 OpenAPI refused or garbled {path}", partner_message=reply["errmsg"] or None)
            for row in rows:
                if isinstance(row, dict):
                    yield row
            pages = reply.get("page_count")
            if len(rows) < self._rows or (isinstance(pages, int) and index >= pages):
                return
        raise unknown(code, f"{path} has more than {self._pages} pages; raise the target's options.max_pages")


def _qty(value: Any) -> int:
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _shipped_at(value: Any) -> datetime | None:
    try:
        day = date.fromisoformat(str(value or "")[:10])
    except ValueError:
        return None
    return datetime.combine(day, time(0), tzinfo=U8_ZONE).astimezone(UTC)
