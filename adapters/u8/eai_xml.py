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
from adapters.u8.fields import REQUIRED_ENTRY, REQUIRED_HEADER, check_amounts, check_widths
from gateway.ports import ErpDocument

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
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
    header = _texts({"code": doc.code, **{k: v for k, v in doc.header.items() if k != "code"}}, "header")
    _require(header, REQUIRED_HEADER, "header")
    if not doc.entries:
        raise ValueError("a sale order needs at least one entry")
    entries = []
    for rowno, entry in enumerate(doc.entries, start=1):
        tags = _texts(_entry_tags(entry, doc.header.get("taxrate"), rowno), f"entry {rowno}")
        _require(tags, REQUIRED_ENTRY, f"entry {rowno}")
        check_amounts(tags, f"entry {rowno}")
        entries.append(tags)
    # Widths last: the values checked are exactly the text that goes out (FieldWidthError).
    check_widths(header, entries)
    root = _envelope("saleorder", sender=sender, receiver=receiver, proc=proc, docid=doc.order_id)
    saleorder = etree.SubElement(root, "saleorder")
    _fill(etree.SubElement(saleorder, "header"), header)
    body = etree.SubElement(saleorder, "body")
    for tags in entries:
        _fill(etree.SubElement(body, "entry"), tags)
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


def build_delete(code: str, *, sender: str, docid: str = "", receiver: str = "u8") -> bytes:
    """Render a ``proc="delete"`` request for the sale order ``code``: the template shape with
    only the header ``code`` (inferred: no public sample shows an EAI delete body)."""
    root = _envelope("saleorder", sender=sender, receiver=receiver, proc="delete", docid=docid)
    header = etree.SubElement(etree.SubElement(root, "saleorder"), "header")
    etree.SubElement(header, "code").text = code
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


def build_query(code: str, *, sender: str, receiver: str = "u8") -> bytes:
    """Render a ``proc="query"`` request for the sale order whose ``cSOCode`` is ``code`` (§1.8)."""
    return build_field_query("saleorder", [("cSOCode", "=", code, "")], sender=sender, receiver=receiver, code=code)


def build_field_query(
    roottag: str,
    fields: list[tuple[str, str, str, str]],
    *,
    sender: str,
    receiver: str = "u8",
    code: str | None = None,
) -> bytes:
    """A ``proc="query"`` request of ``<field name= operation= value= logic=>`` conditions (§1.8).

    Args:
        roottag: The document type, ``saleorder`` or ``consignment``.
        fields: ``(name, operation, value, logic)`` per condition; ``logic`` joins it to the
            previous one (``and``/``or``, empty for the first), as in E4's query.
        sender: The registered external-system code.
        receiver: The receiving system.
        code: The ``code`` attribute of the document element (E4's department query), if any.
    """
    root = _envelope(roottag, sender=sender, receiver=receiver, proc="query", docid="")
    element = etree.SubElement(root, roottag, code=code) if code else etree.SubElement(root, roottag)
    for name, operation, value, logic in fields:
        etree.SubElement(element, "field", name=name, operation=operation, value=value, logic=logic)
    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


def parse_reply(data: bytes, *, strict: bool = False) -> list[ReplyItem]:
    """Read the items of a U8 EAI reply.

    Accepts ``<ufinterface roottag="return">`` (or another ``…return`` roottag such as
    ``voucheraddreturn``) with one ``<item>`` per document, and, unless ``strict``, the
    ``<u8apireturn issuccess="true|false"><error>…`` variant, as the root or as a child of the root.

    Args:
        data: The reply body.
        strict: Refuse the ``<u8apireturn>`` variant too. §1.5 calls it unverified for sale
            orders (one client, E6), so the adapter reads it as "outcome unknown", neither
            success nor failure.

    Raises:
        ReplyShapeError: anything else, including a DOCTYPE (entities are never expanded).
    """
    root = _parse(data)
    u8api = root if root.tag == "u8apireturn" else root.find("u8apireturn")
    if u8api is not None:
        if strict:
            raise ReplyShapeError("the unverified <u8apireturn> reply variant")
        return [_u8api_item(u8api)]
    if root.tag != "ufinterface" or not root.get("roottag", "").lower().endswith("return"):
        raise ReplyShapeError(f"not a U8 EAI return document (root <{root.tag}>)")
    items = [_item(element) for element in root.iter("item")]
    if not items:
        raise ReplyShapeError("U8 return document without any <item>")
    return items


def parse_query_reply(data: bytes, *, roottag: str = "saleorder", strict: bool = False) -> list[dict[str, Any]]:
    """Read the records of a ``proc="query"`` reply (template shape, §1.8).

    Args:
        data: The reply body.
        roottag: The record element, ``saleorder`` or ``consignment``.
        strict: Refuse the ``<u8apireturn>`` variant (see ``parse_reply``).

    Returns:
        One dict per record element: its header tags, plus ``lines``, a list of entry dicts.
        Empty when U8 found nothing (no record, or a return document that succeeded).

    Raises:
        ReplyShapeError: not a query reply, or records of another document type.
        QueryRefusedError: a return document whose item failed; a refused query says nothing
            about whether the order exists.
    """
    root = _parse(data)
    if root.tag != "ufinterface":
        if root.tag == "u8apireturn" or root.find("u8apireturn") is not None:
            return _empty_or_raise(parse_reply(data, strict=strict))
        raise ReplyShapeError(f"not a U8 EAI query reply (root <{root.tag}>)")
    answered = root.get("roottag", "").lower()
    if answered.endswith("return"):
        return _empty_or_raise(parse_reply(data, strict=strict))
    if answered and answered != roottag:
        raise ReplyShapeError(f"query reply of roottag {answered!r}, not {roottag!r}")
    orders = []
    for saleorder in root.iter(roottag):
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


def _texts(tags: Mapping[str, Any], where: str) -> dict[str, str]:
    """The text each tag will carry; empty values are left out (U8 applies its defaults)."""
    out = {}
    for name, value in tags.items():
        if not _TAG.match(name):
            raise ValueError(f"{where}: {name!r} is not a lower-case U8 EAI tag name")
        text = _text(value, name)
        if text != "":
            out[name] = text
    return out


def _require(tags: Mapping[str, str], required: tuple[str, ...], where: str) -> None:
    missing = [name for name in required if not tags.get(name, "").strip()]
    if missing:
        raise ValueError(f"{where}: missing required U8 tags {', '.join(missing)}")


def _fill(parent: etree._Element, tags: Mapping[str, str]) -> None:
    for name, text in tags.items():
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
