"""U8 EAI field table of a sale order: tag → DB column and width (erp-protocols.md §1.3).

One place for the widths the adapter checks before anything is sent. U8 itself either cuts an
over-long value or fails the whole insert with SQL Server's "将截断字符串或二进制数据", in the
middle of its own transaction, which the client sees as HTTP 500 (an unknown outcome) — so a value
that cannot fit is refused here, as a ``FieldWidthError`` naming the tag and the column.

Widths come from the Yonyou template comment (T, ``SaleOrder.xml``: ``code varchar(10)``,
``custcode varchar(20)``, …) and, where the template says nothing, from the database model (D1:
``cBusType`` 8, ``cCusName`` 120). They are ``varchar`` widths: SQL Server counts bytes in the
account set's code page (Chinese_PRC, GBK), so a Chinese character counts two — measured with
GB18030, which encodes every character. A U8 whose columns are wider (newer versions made
``cSOCode`` nvarchar(30), D1) accepts everything this table lets through.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

#: Header tag → (DB column in SO_SOMain, width). Tags not listed carry numbers or dates.
HEADER_FIELDS: dict[str, tuple[str, int]] = {
    "code": ("cSOCode", 10),
    "typecode": ("cSTCode", 2),
    "custcode": ("cCusCode", 20),
    "deptcode": ("cDepCode", 12),
    "personcode": ("cPersonCode", 8),
    "currency": ("cexch_name", 8),
    "maker": ("cMaker", 20),
    "businesstype": ("cBusType", 8),
    "memo": ("cMemo", 60),
    "cusname": ("cCusName", 120),
    "define1": ("cDefine1", 20),
    "define2": ("cDefine2", 20),
    "define3": ("cDefine3", 20),
    "define8": ("cDefine8", 4),
    "define9": ("cDefine9", 8),
    "define10": ("cDefine10", 60),
    "define11": ("cDefine11", 120),
    "define12": ("cDefine12", 120),
    "define13": ("cDefine13", 120),
    "define14": ("cDefine14", 120),
}
#: Entry tag → (DB column in SO_SODetails, width).
ENTRY_FIELDS: dict[str, tuple[str, int]] = {
    "inventorycode": ("cInvCode", 20),
    "memo": ("cMemo", 20),
    **{f"free{i}": (f"cFree{i}", 20) for i in range(1, 11)},
    **{f"define{i}": (f"cDefine{i}", 60) for i in range(22, 26)},
    **{f"define{i}": (f"cDefine{i}", 120) for i in range(28, 34)},
}
#: Header tags the template marks 非空 (T); ``code`` too, because the gateway always sends one (§1.7).
REQUIRED_HEADER = ("code", "date", "typecode", "custcode", "deptcode", "currency", "maker")
REQUIRED_ENTRY = ("inventorycode", "quantity")
_CENT = Decimal("0.01")


class FieldWidthError(ValueError):
    """A value does not fit its U8 column. The message names the tag and column, never the value
    (a memo or a define field may carry buyer data)."""

    def __init__(self, where: str, tag: str, column: str, width: int, length: int) -> None:
        super().__init__(f"{where}.{tag} ({column} varchar({width})) is {length} bytes long")
        self.field = f"{where}.{tag}"
        self.column = column
        self.width = width
        self.length = length


def byte_length(text: str) -> int:
    """Length of ``text`` in a GBK ``varchar`` (two bytes per Chinese character)."""
    return len(text.encode("gb18030"))


def check_widths(header: Mapping[str, str], entries: list[Mapping[str, str]]) -> None:
    """Refuse the first value longer than its column.

    Args:
        header: Header tags as the text that will be sent.
        entries: Each entry's tags as text.

    Raises:
        FieldWidthError: naming the tag (``header.custcode``, ``entry 2.inventorycode``).
    """
    _check(header, HEADER_FIELDS, "header")
    for rowno, entry in enumerate(entries, start=1):
        _check(entry, ENTRY_FIELDS, f"entry {rowno}")


def check_amounts(entry: Mapping[str, str], where: str) -> None:
    """The §1.3 rules of one entry's numbers: ``quantity > 0``, and, when it carries them,
    ``money + tax = sum`` to the fen and ``sum = taxunitprice × quantity`` within a fen (unit prices
    have ten places).

    Raises:
        ValueError: the amounts disagree, or one is not a number.
    """
    values = {}
    for tag in ("quantity", "taxunitprice", "money", "tax", "sum"):
        if entry.get(tag) not in (None, ""):
            try:
                values[tag] = Decimal(str(entry[tag]))
            except InvalidOperation as exc:
                raise ValueError(f"{where}.{tag} is not a number") from exc
            if not values[tag].is_finite():
                raise ValueError(f"{where}.{tag} is not a number")
    if "quantity" in values and not values["quantity"] > 0:
        raise ValueError(f"{where}.quantity must be greater than 0 (U8 requires quantity > 0)")
    if {"money", "tax", "sum"} <= values.keys() and values["money"] + values["tax"] != values["sum"]:
        raise ValueError(f"{where}: money + tax differs from sum")
    if {"sum", "taxunitprice", "quantity"} <= values.keys():
        if abs(values["taxunitprice"] * values["quantity"] - values["sum"]) > _CENT:
            raise ValueError(f"{where}: taxunitprice × quantity differs from sum by more than a fen")


def _check(tags: Mapping[str, Any], table: Mapping[str, tuple[str, int]], where: str) -> None:
    for tag, text in tags.items():
        spec = table.get(tag)
        if spec is None or not isinstance(text, str):
            continue
        column, width = spec
        length = byte_length(text)
        if length > width:
            raise FieldWidthError(where, tag, column, width, length)
