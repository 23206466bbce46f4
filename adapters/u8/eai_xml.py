"""U8 EAI XML: build ``saleorder`` requests and read replies (erp-protocols.md §1.2–§1.5, §1.8).

Pure functions, no I/O. Requests follow the Yonyou template (§1.3); replies are read through
``adapters.xmlsafe`` only, and anything that is not one of the shapes seen in §1.5 is a
``ReplyShapeError`` so the adapter can treat it as "outcome unknown" rather than as a failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from lxml import etree

from adapters import xmlsafe
from adapters.u8.amounts import line_amounts
from gateway.ports import ErpDocument

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
REQUIRED_HEADER = ("code", "date", "custcode", "deptcode", "currency", "maker")
REQUIRED_ENTRY = ("inventorycode", "quantity")
# Entry keys that are inputs to ``line_amounts`` rather than U8 tags.
AMOUNT_INPUTS = ("sum_fen", "quoted_fen", "taxrate")
# EAI tags are lower-case names; a DB column name such as ``cWhCode`` is silently ignored or
# refused by U8 (§1.3), so it is stopped here, before anything is sent.
_TAG = re.compile(r"^[a-z][a-z0-9_]*$")


class ReplyShapeError(ValueError):
    """The reply is not a U8 EAI reply we recognise (empty, HTML, unknown root, unsafe XML)."""


class QueryRefusedError(ReplyShapeError):
    """U8 answered a query with a failed return item; ``dsc`` keeps its words."""

    def __init__(self, dsc: str) -> None:
        super().__init__(f"U8 refused the query: {dsc}")
        self.dsc = dsc


class ReplyItem(msgspec.Struct, frozen=True):
    """One ``<item>`` of a U8 return document: ``succeed == "0"`` means written."""

    key: str
    succeed: str
    dsc: str
    u8key: str


def build_request(doc: ErpDocument, *, sender: str, proc: str = "add", receiver: str = "u8") -> bytes:
    """Render one sale order as a U8 EAI ``ufinterface`` document.

    Args:
        doc: The translated document; ``header`` and ``entries`` hold EAI tag names, entries may
            carry ``sum_fen``/``quoted_fen``/``taxrate`` which become the amount tags.
        sender: The external-system code registered in U8 EAI (外部系统注册).
        proc: The EAI operation, ``add`` for a new order.
        receiver: The receiving system, ``u8``.

    Returns:
        UTF-8 bytes with an XML declaration.

    Raises:
        ValueError: a required tag is missing, a tag is not an EAI name, a value is a float, or
            the header's ``code`` differs from ``doc.code``.
    """
    if doc.header.get("code") not in (None, "", doc.code):
        raise ValueError("header code differs from the document code")
    header = {"code": doc.code, **{k: v for k, v in doc.header.items() if k != "code"}}
    root = _envelope("saleorder", sender=sender, receiver=receiver, proc=proc, docid=doc.order_id)
    saleorder = etree.SubElement(root, "saleorder")
    _fill(etree.SubElement(saleorder, "header"), header, REQUIRED_HEADER, "header")
    if not doc.entries:
        raise ValueError("a sale order needs at least one entry")
    body = etree.SubElement(saleorder, "body")
    for rowno, entry in enumerate(doc.entries, start=1):
        tags = _entry_tags(entry, header.get("taxrate"), rowno)
        _fill(etree.SubElement(body, "entry"), tags, REQUIRED_ENTRY, f"entry {rowno}")
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


def build_query(code: str, *, sender: str, receiver: str = "u8") -> bytes:
    """Render a ``proc="query"`` request for the sale order whose ``cSOCode`` is ``code`` (§1.8)."""
    root = _envelope("saleorder", sender=sender, receiver=receiver, proc="query", docid="")
    saleorder = etree.SubElement(root, "saleorder", code=code)
    etree.SubElement(saleorder, "field", name="cSOCode", operation="=", value=code, logic="")
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


def parse_reply(data: bytes) -> list[ReplyItem]:
    """Read the items of a U8 EAI reply.

    Accepts ``<ufinterface roottag="return">`` (or another ``…return`` roottag such as
    ``voucheraddreturn``) with one ``<item>`` per document, and the ``<u8apireturn
    issuccess="true|false"><error>…`` variant, as the root or as a child of the root.

    Raises:
        ReplyShapeError: anything else, including a DOCTYPE (entities are never expanded).
    """
    root = _parse(data)
    u8api = root if root.tag == "u8apireturn" else root.find("u8apireturn")
    if u8api is not None:
        return [_u8api_item(u8api)]
    if root.tag != "ufinterface" or not root.get("roottag", "").lower().endswith("return"):
        raise ReplyShapeError(f"not a U8 EAI return document (root <{root.tag}>)")
    items = [_item(element) for element in root.iter("item")]
    if not items:
        raise ReplyShapeError("U8 return document without any <item>")
    return items


def parse_query_reply(data: bytes) -> list[dict[str, Any]]:
    """Read the sale orders of a ``proc="query"`` reply (template shape, §1.8).

    Returns:
        One dict per ``<saleorder>``: its header tags, plus ``lines``, a list of entry dicts.
        Empty when U8 found nothing (no ``<saleorder>``, or a return document that succeeded).

    Raises:
        ReplyShapeError: not a query reply.
        QueryRefusedError: a return document whose item failed; a refused query says nothing
            about whether the order exists.
    """
    root = _parse(data)
    if root.tag != "ufinterface":
        if root.tag == "u8apireturn" or root.find("u8apireturn") is not None:
            return _empty_or_raise(parse_reply(data))
        raise ReplyShapeError(f"not a U8 EAI query reply (root <{root.tag}>)")
    if root.get("roottag", "").lower().endswith("return"):
        return _empty_or_raise(parse_reply(data))
    orders = []
    for saleorder in root.iter("saleorder"):
        header = saleorder.find("header")
        order = _text_children(header) if header is not None else {}
        order["lines"] = [_text_children(entry) for entry in saleorder.iterfind("body/entry")]
        orders.append(order)
    return orders


# --------------------------------------------------------------------------- helpers


def _envelope(roottag: str, *, sender: str, receiver: str, proc: str, docid: str) -> etree._Element:
    # Attribute order follows the template (§1.2); roottag must equal the child element name.
    return etree.Element(
        "ufinterface",
        sender=sender,
        receiver=receiver,
        roottag=roottag,
        docid=docid,
        proc=proc,
        codeexchanged="N",
        exportneedexch="N",
        version="2.0",
    )


def _entry_tags(entry: Mapping[str, Any], header_taxrate: Any, rowno: int) -> dict[str, Any]:
    tags = {k: v for k, v in entry.items() if k not in AMOUNT_INPUTS}
    tags.setdefault("irowno", rowno)
    if "sum_fen" not in entry:
        if entry.get("taxrate") not in (None, ""):
            tags["taxrate"] = entry["taxrate"]
        return tags
    taxrate = entry.get("taxrate")
    if taxrate in (None, ""):
        taxrate = header_taxrate
    if taxrate in (None, ""):
        raise ValueError(f"entry {rowno}: sum_fen given without a taxrate")
    amounts = line_amounts(
        entry["sum_fen"],
        _number(entry.get("quantity"), rowno),
        _number(taxrate, rowno),
        quoted_fen=entry.get("quoted_fen"),
    )
    clash = sorted(set(amounts) & set(tags))
    if clash:
        raise ValueError(f"entry {rowno}: {', '.join(clash)} given as well as sum_fen")
    # The line rate goes out too: U8 would otherwise fall back to the inventory's own rate.
    return {**tags, **amounts, "taxrate": taxrate}


def _number(value: Any, rowno: int) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ValueError(f"entry {rowno}: quantity and taxrate must be int, Decimal or str")
    return value if isinstance(value, int) else Decimal(value)


def _fill(parent: etree._Element, tags: Mapping[str, Any], required: tuple[str, ...], where: str) -> None:
    missing = [name for name in required if tags.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing required U8 tags {', '.join(missing)}")
    for name, value in tags.items():
        if not _TAG.match(name):
            raise ValueError(f"{where}: {name!r} is not a lower-case U8 EAI tag name")
        text = _text(value, name)
        if text != "":
            etree.SubElement(parent, name).text = text


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # U8 flags such as bgift / disflag are 0/1
        return "1" if value else "0"
    if isinstance(value, float):
        raise ValueError(f"{name}: floats are refused; pass Decimal or str")
    if isinstance(value, Decimal) and value.is_finite():
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | str):
        return str(value)
    raise ValueError(f"{name}: unsupported value {type(value).__name__} for a U8 tag")


def _parse(data: bytes) -> etree._Element:
    # IIS pages sometimes answer with a blank line before the declaration; that is still XML.
    data = (data or b"").lstrip()
    if not data:
        raise ReplyShapeError("empty reply")
    try:
        return xmlsafe.parse(data)
    except xmlsafe.UnsafeXmlError as exc:
        raise ReplyShapeError("reply declares a DOCTYPE or entities; refused") from exc
    except etree.XMLSyntaxError as exc:
        raise ReplyShapeError("reply is not well-formed XML") from exc


def _item(element: etree._Element) -> ReplyItem:
    succeed = element.get("succeed")
    if succeed is None:
        raise ReplyShapeError("U8 return <item> without a succeed attribute")
    return ReplyItem(
        key=element.get("key", "").strip(),
        succeed=succeed.strip(),
        dsc=element.get("dsc", "").strip(),
        u8key=element.get("u8key", "").strip(),
    )


def _u8api_item(element: etree._Element) -> ReplyItem:
    flag = element.get("issuccess", "").strip().lower()
    if flag not in ("true", "false"):
        raise ReplyShapeError("<u8apireturn> without issuccess true/false")
    if flag == "true":
        return ReplyItem(key="", succeed="0", dsc="ok", u8key="")
    error = element.findtext("error") or ""
    return ReplyItem(key="", succeed="1", dsc=error.strip(), u8key="")


def _empty_or_raise(items: list[ReplyItem]) -> list[dict[str, Any]]:
    failed = [item for item in items if item.succeed != "0"]
    if failed:
        raise QueryRefusedError(failed[0].dsc)
    return []


def _text_children(element: etree._Element) -> dict[str, Any]:
    return {child.tag: (child.text or "").strip() for child in element if isinstance(child.tag, str)}
