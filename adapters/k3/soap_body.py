"""The K3 SOAP adapter's message bodies (``adapters.k3.soap``): the ``FormSEOrder`` built from an
``ErpDocument`` and the ``ServiceResult`` read back from zeep's objects. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from adapters.u8.amounts import entry_amounts
from gateway.ports import ErpDocument, ErpShipment, ErpShipmentLine

#: Entry keys that are inputs to the amounts, not members; ``irowno`` is numbered by
#: ``gateway.document`` for U8 and has no meaning in FormSEOrderEntry.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_AMOUNT_INPUTS = frozenset({"sum_fen", "quoted_fen", "taxrate", "irowno"})


class ReplyShapeError(ValueError):
    """The reply has no integer ``Status``: not the ``ServiceResult`` the WSDL promises."""


def build_order(doc: ErpDocument) -> dict[str, Any]:
    """The ``FormSEOrder`` of ``doc``: the dictionary's header members with ``BillNO = doc.code``,
    and ``Entrys`` whose ``Price``, ``Amount`` and ``StdPrice`` are derived from ``sum_fen``,
    ``quoted_fen``, ``Qty`` and ``taxrate`` (``adapters.u8.amounts``: consistent to the fen).

    Raises:
        ValueError: no entries, or an entry whose amounts cannot be derived.
    """
    header = {k: v for k, v in doc.header.items() if v is not None and k.casefold() != "billno"}
    entries = [_entry(row, entry) for row, entry in enumerate(doc.entries, start=1)]
    if not entries:
        raise ValueError("a sales order needs at least one entry")
    return {"BillNO": doc.code, **header, "Entrys": {"FormSEOrderEntry": entries}}


def _entry(row: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in entry.items() if k not in _AMOUNT_INPUTS and v is not None}
    qty = fields.get("Qty")
    if qty is None or isinstance(qty, float | bool):
        raise ValueError(f"entry {row}: Qty must be a whole or decimal number, not {qty!r}")
    fields["Qty"] = str(qty)
    amounts = entry_amounts(row, entry, qty)
    if amounts is None:
        return fields
    derived = {"Price": amounts["taxunitprice"], "Amount": amounts["sum"], "StdPrice": amounts["quotedprice"]}
    clash = sorted(k for k in derived if k in fields)
    if clash:
        raise ValueError(f"entry {row}: {', '.join(clash)} given as well as sum_fen")
    return {**fields, **derived}


def member(obj: Any, name: str) -> Any:
    """A member of a zeep object or a dict, None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return obj[name]
    except (KeyError, AttributeError, TypeError):
        return None


def read_result(reply: Any, shape: str) -> dict[str, Any]:
    """``ServiceResult`` (``shape="result"``: Status, Message, BillNO), the look-up's
    ``SEOrderQueryResult`` (``shape="query"``: Status, Message, Order) or the shipment query's
    ``SEOutStockQueryResult`` (``shape="outstock"``: Status, Message, OutStocks) as a dict.

    Raises:
        ReplyShapeError: no integer ``Status``.
    """
    status = member(reply, "Status")
    if reply is None or isinstance(status, bool) or not isinstance(status, int):
        raise ReplyShapeError("no integer Status")
    message = member(reply, "Message")
    out = {"Status": status, "Message": str(message or "")}
    if shape == "query":
        out["Order"] = member(reply, "Order")
    elif shape == "outstock":
        out["OutStocks"] = member(member(reply, "OutStocks"), "FormSEOutStock") or []
    else:
        out["BillNO"] = member(reply, "BillNO")
    return out


def same_order(found: Any, doc: ErpDocument) -> bool:
    """Does the bill under our number look like ours? Customer and item numbers, when present."""
    ours, theirs = doc.header.get("CustNumber"), member(found, "CustNumber")
    if ours and theirs and str(ours).strip() != str(theirs).strip():
        return False
    rows = member(member(found, "Entrys"), "FormSEOrderEntry") or []
    their_items = sorted(str(member(r, "Number") or "").strip() for r in rows)
    our_items = sorted(str(e.get("Number") or "").strip() for e in doc.entries)
    return not their_items or their_items == our_items


def check_members(xsd_type: Any, value: Any, path: str) -> None:
    """Refuse members the WSDL's type does not declare, at any depth.

    zeep silently drops unknown keys of a nested dict, so a misspelt member in the outbound
    dictionary would vanish from the message instead of failing.

    Raises:
        ValueError: naming the first unknown member and its path.
    """
    if not isinstance(value, Mapping):
        return
    elements = dict(getattr(xsd_type, "elements", []) or [])
    unknown = sorted(set(value) - set(elements))
    if unknown:
        raise ValueError(f"{path} has no member {', '.join(unknown)} in the WSDL")
    for name, item in value.items():
        child = elements[name].type
        for one in item if isinstance(item, list) else [item]:
            check_members(child, one, f"{path}.{name}")


def read_shipments(code: str, outstocks: Sequence[Any], since: datetime) -> list[ErpShipment]:
    """The outstock bills of one order as ``ErpShipment``s: only their rows that ship ``code``,
    only bills dated at or after ``since`` (K3's dates are China local time without an offset).

    Raises:
        ReplyShapeError: a bill without a number, date or rows, or a row whose quantity is not
            a positive whole number.
    """
    out: list[ErpShipment] = []
    for outstock in outstocks:
        bill_no = str(member(outstock, "BillNO") or "").strip()
        date = member(outstock, "Date")
        if not bill_no or not isinstance(date, datetime):
            raise ReplyShapeError("an outstock bill without BillNO or Date")
        shipped_at = date if date.tzinfo else date.replace(tzinfo=CHINA)
        if shipped_at < since:
            continue
        lines = []
        for row in member(member(outstock, "EntryList"), "FormSEOutStockEntry") or []:
            if str(member(row, "OrderNO") or "").strip().casefold() != code.casefold():
                continue
            qty = member(row, "Qty")
            if not isinstance(qty, Decimal) or qty <= 0 or qty != qty.to_integral_value():
                raise ReplyShapeError(f"outstock {bill_no}: a row quantity that is not a positive whole number")
            item = str(member(row, "ProductNumber") or "").strip()
            lines.append(ErpShipmentLine(item_code=item, qty=int(qty), row=member(row, "OrderEntry")))
        if lines:
            carrier = member(outstock, "ExpressCompany") or None
            waybill = member(outstock, "ExpressNO") or None
            out.append(
                ErpShipment(
                    document_code=code,
                    shipment_no=bill_no,
                    shipped_at=shipped_at,
                    carrier=carrier,
                    waybill_no=waybill,
                    lines=lines,
                )
            )
    return out
