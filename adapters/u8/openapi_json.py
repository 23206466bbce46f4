"""U8+ OpenAPI JSON: the ``saleorder`` body and the reading of replies (erp-protocols.md §2).

Pure functions, no I/O. The body's keys are the EAI tag names (§2: "keys = EAI tag names"), so the
outbound dictionary of the EAI transport (``mappings/erp/u8_saleorder.toml``) serves this one too,
and each line's amounts come from ``adapters.u8.amounts`` exactly as for EAI: consistent to the fen.
Anything that is not a JSON object with an ``errcode`` is a ``ReplyShapeError`` so the adapter can
treat it as "outcome unknown" rather than as a failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

# The same line tags and amount rules as the EAI request: the relay writes through EAI (§2).
from adapters.u8.eai_xml import REQUIRED_ENTRY, REQUIRED_HEADER, ReplyShapeError, _entry_tags, _text
from gateway.ports import ErpDocument

__all__ = ["ReplyShapeError", "build_saleorder", "code_only", "parse_reply"]

# EAI tags are lower-case names; a DB column name such as ``cWhCode`` is refused by U8 (§1.3).
_TAG = re.compile(r"^[a-z][a-z0-9_]*$")


def build_saleorder(doc: ErpDocument) -> bytes:
    """``{"saleorder": {header tags…, "entry": [line tags…]}}`` as UTF-8 JSON.

    Values are strings (amounts as exact decimals, never floats); the header's ``code`` is
    ``doc.code``.

    Raises:
        ValueError: a required tag is missing, a tag is not an EAI name, a value is a float, or
            the header's ``code`` differs from ``doc.code``.
    """
    if doc.header.get("code") not in (None, "", doc.code):
        raise ValueError("header code differs from the document code")
    header = _tags(
        {"code": doc.code, **{k: v for k, v in doc.header.items() if k != "code"}}, REQUIRED_HEADER, "header"
    )
    if not doc.entries:
        raise ValueError("a sale order needs at least one entry")
    entries = [
        _tags(_entry_tags(entry, doc.header.get("taxrate"), rowno), REQUIRED_ENTRY, f"entry {rowno}")
        for rowno, entry in enumerate(doc.entries, start=1)
    ]
    return msgspec.json.encode({"saleorder": {**header, "entry": entries}})


def code_only(code: str) -> bytes:
    """The body naming one sale order by its code (the inferred ``saleorder/delete``)."""
    return msgspec.json.encode({"saleorder": {"code": code}})


def parse_reply(data: bytes) -> dict[str, Any]:
    """A reply object with ``errcode`` as text (``"0"``: success, O1).

    Raises:
        ReplyShapeError: empty, not JSON, not an object, or no ``errcode``.
    """
    text = (data or b"").strip()
    if not text:
        raise ReplyShapeError("empty reply")
    try:
        reply = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReplyShapeError("reply is not JSON") from exc
    if not isinstance(reply, dict) or reply.get("errcode") is None:
        raise ReplyShapeError("reply is not an object with an errcode")
    reply["errcode"] = str(reply["errcode"]).strip()
    reply["errmsg"] = str(reply.get("errmsg") or "").strip()
    return reply


def _tags(values: dict[str, Any], required: tuple[str, ...], where: str) -> dict[str, str]:
    missing = [name for name in required if values.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing required U8 tags {', '.join(missing)}")
    out: dict[str, str] = {}
    for name, value in values.items():
        if not _TAG.match(name):
            raise ValueError(f"{where}: {name!r} is not a lower-case U8 EAI tag name")
        text = _text(value, name)
        if text != "":
            out[name] = text
    return out
