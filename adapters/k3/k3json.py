"""K3 WISE WebAPI bodies and replies (reference/erp-protocols.md §3.3, §3.4): pure functions, no I/O.

The outbound dictionary (``mappings/erp/k3_so.toml``) gives the SO header (``Page1``) and entries
(``Page2``) with base data as ``{FNumber, FName}``; each entry also carries ``sum_fen`` (the
tax-inclusive line amount in fen), ``quoted_fen`` and ``taxrate``, from which every amount field
is derived here with ``Decimal`` so that price × quantity meets the line amount to the fen (the
same derivation as U8's, ``adapters.u8.amounts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from adapters.u8.amounts import entry_amounts
from gateway.ports import ErpDocument

#: Entry keys that are inputs to the amounts rather than K3 fields; ``irowno`` is numbered by
#: ``gateway.document`` for U8 and has no K3 meaning (K3 numbers ``FEntryID`` itself).
AMOUNT_INPUTS = ("sum_fen", "quoted_fen", "taxrate")
_DROPPED = frozenset({"irowno", *AMOUNT_INPUTS})
#: entry_amounts' names → the K3 SO entry fields of §3.3 (单价, 含税单价, 金额, 价税合计).
_AMOUNT_FIELDS = {"unitprice": "Fauxprice", "taxunitprice": "FAuxTaxPrice", "money": "Famount", "sum": "FAllAmount"}


class ReplyShapeError(ValueError):
    """The reply is not the ``{"StatusCode", "Message", "Data"}`` envelope of §3.4."""


class Envelope(msgspec.Struct, frozen=True):
    status: int
    message: str
    data: Any


def build_bill(doc: ErpDocument, *, with_bill_no: bool = True) -> dict[str, Any]:
    """``{"Data": {"Page1": [header], "Page2": entries}}`` for ``SO/Save`` (and ``SO/Update``, whose
    top-level ``FBillNo`` the caller adds). ``FBillNo`` in Page1 is the document code: K3 would
    number the bill itself without it, and its own number is what makes a second Save of the same
    order fail instead of writing it twice (§3.4 Idempotency).

    Raises:
        ValueError: an entry's amounts cannot be derived (no quantity, a negative amount).
    """
    # An empty field is left out rather than sent as null: K3 reads a null base-data field as a
    # reference to nothing.
    header = {k: v for k, v in doc.header.items() if k.casefold() != "fbillno" and _given(v)}
    if with_bill_no:
        header = {"FBillNo": doc.code, **header}
    entries = [_entry(row, entry) for row, entry in enumerate(doc.entries, start=1)]
    if not entries:
        raise ValueError("an SO needs at least one entry (Page2)")
    return {"Data": {"Page1": [header], "Page2": entries}}


def _given(value: Any) -> bool:
    """A value worth sending: not null, and not a base-data reference without its FNumber (an
    order no action gave a warehouse maps to ``{"FNumber": null}``)."""
    if isinstance(value, Mapping):
        return any(k.casefold() == "fnumber" and v not in (None, "") for k, v in value.items())
    return value is not None


def _entry(row: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in entry.items() if k not in _DROPPED and _given(v)}
    qty = fields.get("Fauxqty")
    if qty is None or isinstance(qty, float):
        raise ValueError(f"entry {row}: Fauxqty must be a whole or decimal number, not {qty!r}")
    amounts = entry_amounts(row, entry, qty)
    if amounts is None:
        return fields
    derived = {k3: amounts[name] for name, k3 in _AMOUNT_FIELDS.items()}
    clash = sorted(k for k in derived if k.casefold() in {f.casefold() for f in fields})
    if clash:
        raise ValueError(f"entry {row}: {', '.join(clash)} given as well as sum_fen")
    return {**fields, "Fauxqty": str(qty), **derived, "FCess": str(entry["taxrate"])}


def parse_envelope(body: bytes) -> Envelope:
    """The common reply envelope; ``StatusCode`` as a number or numeric text (K4 compares "200").

    Raises:
        ReplyShapeError: not JSON, not an object, or no usable ``StatusCode``.
    """
    try:
        reply = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ReplyShapeError("not JSON") from exc
    if not isinstance(reply, dict):
        raise ReplyShapeError("not a JSON object")
    status = reply.get("StatusCode")
    if isinstance(status, str) and status.strip().isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int):
        raise ReplyShapeError("no StatusCode")
    message = reply.get("Message")
    return Envelope(status, message if isinstance(message, str) else "", reply.get("Data"))


def sql_text(value: str) -> str:
    """A text literal for a GetList ``Filter``: K3 pastes the filter into SQL, so a quote doubles."""
    return "'" + value.replace("'", "''") + "'"


def number_of(value: Any) -> str:
    """The ``FNumber`` of a base-data cell (``{FNumber, FName}`` or the bare number)."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key).casefold() == "fnumber":
                return str(inner or "").strip()
        return ""
    return "" if value is None else str(value).strip()


def field(row: Mapping[str, Any], name: str) -> Any:
    """A row's field matched case-insensitively (K3's keys vary in case, §3.3)."""
    if name in row:
        return row[name]
    folded = name.casefold()
    return next((v for k, v in row.items() if str(k).casefold() == folded), None)


def list_rows(data: Any) -> tuple[int, list[dict[str, Any]]]:
    """``ROWCOUNT`` and ``DATA`` of a GetList answer (K1 ``ListResult``).

    Raises:
        ReplyShapeError: ``Data`` is not that shape.
    """
    if not isinstance(data, Mapping):
        raise ReplyShapeError("GetList Data is not an object")
    rows = field(data, "DATA")
    count = field(data, "ROWCOUNT")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ReplyShapeError("GetList Data.DATA is not a list of rows")
    try:
        total = int(count) if count is not None else len(rows)
    except (TypeError, ValueError) as exc:
        raise ReplyShapeError("GetList Data.ROWCOUNT is not a number") from exc
    return total, [dict(r) for r in rows]
