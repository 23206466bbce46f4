"""The shape of a field-translation dictionary (a TOML file under ``mappings/``), as msgspec Structs.

A dictionary says, for each target field, where its value comes from in the source document::

    [dictionary]
    name = "taobao"                      # unique name; platform dictionaries are named after the platform
    kind = "order"                       # "order" builds a CanonicalOrder; "document" builds plain dicts
    version = "1"                        # bumped by people; the engine also keeps a content digest
    root = "trade_fullinfo_get_response.trade"   # where the object to translate lives in the payload
    shop_alias = "seller_nick"           # a source path naming the shop, matched against shop aliases
    ignore = ["alipay_no", ...]          # source fields known and deliberately not used

    [fields]
    order_id = { path = ["tid_str", "tid"], transform = "id", required = true }
    "totals.goods_fen" = { path = "total_fee", transform = "yuan" }
    status = { path = "status", table = "status" }          # enum through a table below
    "receiver.pii_state" = { expr = "pii_state(receiver.name, receiver.phone)" }

    [children.lines]                     # a list in the target, built from a list in the source
    path = "orders.order"
    [children.lines.fields]
    ...

    [tables.status]
    WAIT_SELLER_SEND_GOODS = "READY_TO_SHIP"

A child list whose name starts with ``_`` is scratch: built, usable in expressions (``values_of(_bases,
"net")``), never output. In a child scope, ``index`` is the element's position in its source list.

A field takes the first non-empty of its ``path`` alternatives, passes it through ``transform``
(or the ``table``), falls back to ``expr`` (computed from other fields of the same scope,
``parent.x`` for the enclosing scope, and child lists) and then to ``default``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class FieldSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str | list[str] | None = None
    transform: str | None = None
    table: str | None = None  # a compiled-in enum table ([tables.NAME])
    lookup: str | None = None  # a value table supplied at run time (shop → customer code, …)
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    expr: str | None = None
    default: Any = None
    required: bool = False
    doc: str | None = None


class ChildSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str | list[str]  # "." means the current source element itself, as a one-item list
    fields: dict[str, FieldSpec] = msgspec.field(default_factory=dict)
    children: dict[str, ChildSpec] = msgspec.field(default_factory=dict)
    where: str | None = None  # keep only elements for which this expression is true
    group_by: str | None = None  # merge elements with equal values of this target field
    ignore: list[str] = msgspec.field(default_factory=list)
    # Several blocks may fill one target list (PDD ``item_list`` and ``gift_list`` → ``lines``): a
    # block with ``into = "lines"`` appends its elements, in the order the blocks are written.
    into: str | None = None


class DictionaryMeta(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    kind: Literal["order", "refund", "document"] = "order"
    version: str = "1"
    platform: str | None = None
    source: str | None = None  # the partner API and the reference section it follows
    root: str | None = None
    shop_alias: str | list[str] | None = None
    ignore: list[str] = msgspec.field(default_factory=list)
    # Value tables this dictionary looks up (``lookup = "fee_kinds"``), relative to the mappings folder.
    values: list[str] = msgspec.field(default_factory=list)


class DictionarySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dictionary: DictionaryMeta
    fields: dict[str, FieldSpec] = msgspec.field(default_factory=dict)
    children: dict[str, ChildSpec] = msgspec.field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
