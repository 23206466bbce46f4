"""Yonyou U8 sales orders (销售订单) as the simulated U8 EAI keeps them: reference/erp-protocols.md
§1.3 (tags and template rules), §1.6 (error texts), §1.7 (uniqueness of ``code``), §5.4–5.6.

``U8Store`` holds the seeded archives (档案) and the orders written through EAI. It reads and
validates ``<saleorder>`` elements; the envelope and the reply document are ``u8eai.py``'s job.
Error texts (``dsc``) are Chinese, as U8 writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

_DEFINES = frozenset(f"define{i}" for i in range(1, 17))
# §1.3 table: header tags and the optional ones listed with them.
HEADER_TAGS = frozenset(
    {"code", "date", "typecode", "custcode", "deptcode", "personcode", "currency", "currencyrate"}
    | {"taxrate", "maker", "businesstype", "memo", "cusname", "dpredatebt", "dpremodatebt", "disflag"}
    | _DEFINES
)
# §1.3 entry tags; ``bsaleprice``/``bgift`` are not in the template list but a real client sends
# them (§1.4, E6), so U8 evidently takes them.
ENTRY_TAGS = frozenset(
    {"inventorycode", "quantity", "num", "quotedprice", "unitprice", "taxunitprice", "money", "tax"}
    | {"sum", "natunitprice", "natmoney", "nattax", "natsum", "natdiscount", "taxrate", "discountrate"}
    | {"discountrate2", "dpredate", "dpremodate", "preparedate", "irowno", "id", "mid", "outid"}
    | {"body_outid", "bsaleprice", "bgift"}
)
REQUIRED_HEADER = ("date", "custcode", "deptcode", "currency", "maker")
NUMERIC_HEADER = frozenset({"currencyrate", "taxrate"})
NUMERIC_ENTRY = frozenset(
    {"quantity", "num", "quotedprice", "unitprice", "taxunitprice", "money", "tax", "sum", "taxrate"}
    | {"natunitprice", "natmoney", "nattax", "natsum", "natdiscount", "discountrate", "discountrate2"}
    | {"irowno"}
)
# Always present in a document's lines (null when not sent), as CONTRACT §4 names them.
DOCUMENT_LINE_FIELDS = ("inventorycode", "quantity", "taxunitprice", "unitprice", "money", "tax")
DOCUMENT_LINE_FIELDS += ("sum", "taxrate")
MAX_CODE_LENGTH = 30
# Column widths in characters of the U8 database (D1: SO_SOMain / SO_SODetails are nvarchar there;
# the EAI template's older varchar widths are narrower, and the gateway keeps to those).
HEADER_WIDTHS = {"typecode": 2, "custcode": 20, "deptcode": 12, "personcode": 20, "currency": 8, "maker": 20}
HEADER_WIDTHS |= {"businesstype": 8, "memo": 255, "cusname": 120, "define1": 20, "define2": 20, "define3": 20}
HEADER_WIDTHS |= {"define8": 4, "define9": 8, "define10": 60} | {f"define{i}": 120 for i in range(11, 15)}
ENTRY_WIDTHS = {"inventorycode": 60}
#: SQL Server's refusal of a value wider than its column (error 8152), as EAI passes it on (inferred).
TRUNCATED = "将截断字符串或二进制数据。"
_CENT = Decimal("0.01")
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


class SaleOrderRejected(Exception):
    """U8 refused the document; ``dsc`` is the text its reply item carries (succeed="101")."""

    def __init__(self, dsc: str) -> None:
        super().__init__(dsc)
        self.dsc = dsc


@dataclass
class SaleOrder:
    """One stored order: the EAI tags as sent (text), plus U8's own id and time of creation."""

    code: str
    u8key: str
    header: dict[str, str]
    lines: list[dict[str, str]]
    created_at: str


def children(el: etree._Element) -> list[tuple[str, etree._Element]]:
    """Element children with lower-cased tag names: EAI matches tags case-insensitively (§1.6)."""
    return [(c.tag.lower(), c) for c in el if isinstance(c.tag, str)]


def read_fields(el: etree._Element, allowed: frozenset[str]) -> dict[str, str]:
    """The non-empty text of ``el``'s children; a tag not in ``allowed`` is refused as U8 does (E2)."""
    values: dict[str, str] = {}
    for tag, child in children(el):
        if tag not in allowed:
            raise SaleOrderRejected(f"数据库没有提供的字段({tag})")
        text = (child.text or "").strip()
        if text:
            values[tag] = text
    return values


def read_saleorder(el: etree._Element) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Header and entry fields of a ``<saleorder>`` element, unknown tags refused."""
    parts = dict(reversed(children(el)))  # first <header>/<body> wins
    header_el = parts.get("header")
    header = read_fields(header_el, HEADER_TAGS) if header_el is not None else {}
    body_el = parts.get("body")
    entries = [c for tag, c in children(body_el) if tag == "entry"] if body_el is not None else []
    return header, [read_fields(entry, ENTRY_TAGS) for entry in entries]


def number(text: str, what: str) -> Decimal:
    """``text`` as a finite Decimal, else U8's refusal naming ``what``."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise SaleOrderRejected(f"{what}[{text}]不是有效的数字")
    return value


def _json_number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


class U8Store:
    """The 账套 behind the simulated EAI: archives from the seed, and the sales orders."""

    def __init__(self, seed: Mapping[str, Any]) -> None:
        self.senders = frozenset(str(s) for s in seed.get("senders", ()))
        self.customers: dict[str, str] = dict(seed.get("customers", {}))
        self.departments: dict[str, str] = dict(seed.get("departments", {}))
        self.sale_types: dict[str, str] = dict(seed.get("sale_types", {}))
        self.persons: dict[str, str] = dict(seed.get("persons", {}))
        self.inventory: dict[str, str] = dict(seed.get("inventory", {}))
        self.warehouses: dict[str, str] = dict(seed.get("warehouses", {}))
        # 发货单 by case-folded cDLCode (u8consignment.py writes them; a sale order they ship can
        # then be neither edited nor deleted).
        self.consignments: dict[str, Any] = {}
        # Keyed case-folded: U8's SQL Server collation (Chinese_PRC_CI_AS) ignores case.
        self.orders: dict[str, SaleOrder] = {}
        self._last_auto = 0
        self._last_id = 1_000_000_000  # U8 ids are ten-digit numbers starting at 1000000001

    # -- writes (proc add / edit / delete) ---------------------------------------------------

    def add(self, el: etree._Element) -> SaleOrder:
        header, lines = read_saleorder(el)
        self._validate(header, lines)
        code = header.get("code") or self._next_code()
        if code.casefold() in self.orders:
            raise SaleOrderRejected(f"销售订单号[{code}]已经存在，不可重复！")
        self._last_id += 1
        order = SaleOrder(code, str(self._last_id), {**header, "code": code}, _numbered(lines), now_text())
        self.orders[code.casefold()] = order
        return order

    def edit(self, el: etree._Element) -> SaleOrder:
        header, lines = read_saleorder(el)
        order = self._existing(header.get("code", ""))
        self._refuse_if_shipped(order, "修改")
        self._validate(header, lines)
        order.header, order.lines = {**header, "code": order.code}, _numbered(lines)
        return order

    def delete(self, el: etree._Element) -> SaleOrder:
        code = el.get("code") or read_saleorder(el)[0].get("code", "")
        order = self._existing(code)
        self._refuse_if_shipped(order, "删除")
        del self.orders[order.code.casefold()]
        return order

    # -- reads ---------------------------------------------------------------------------------

    def query(self, el: etree._Element) -> list[SaleOrder]:
        """Orders matching ``<saleorder code="…"/>`` and/or ``<field name="cSOCode" operation="=" …/>``."""
        wanted: list[str] = [el.get("code", "")] if el.get("code") else []
        for field in el.iter("field", "FIELD", "Field"):
            name, operation = field.get("name", "").lower(), field.get("operation", "=").strip()
            if name not in ("csocode", "code") or operation != "=":
                raise SaleOrderRejected(f"不支持的查询条件[{field.get('name', '')} {operation}]")
            wanted.append(field.get("value", ""))
        if not wanted:
            return list(self.orders.values())
        # By key, as U8 finds a code through its unique index: a scan of every order would make
        # each look-up cost the simulator milliseconds once it holds tens of thousands of them.
        codes = {w.casefold() for w in wanted}
        found = self.orders.get(codes.pop()) if len(codes) == 1 else None
        return [found] if found is not None else []

    def documents(self) -> list[dict[str, Any]]:
        return [_as_document(order) for order in self.orders.values()]

    # -- rules of the template (§1.3) ----------------------------------------------------------

    def _validate(self, header: dict[str, str], lines: list[dict[str, str]]) -> None:
        for tag in REQUIRED_HEADER:
            if not header.get(tag):
                raise SaleOrderRejected(f"表头字段[{tag}]不能为空")
        if len(header.get("code", "")) > MAX_CODE_LENGTH:
            raise SaleOrderRejected(f"单据号超长：[{header['code']}]超过{MAX_CODE_LENGTH}位")
        _check_widths(header, HEADER_WIDTHS)
        for line in lines:
            _check_widths(line, ENTRY_WIDTHS)
        if not any(is_date(header["date"], fmt) for fmt in DATE_FORMATS):
            raise SaleOrderRejected(f"单据日期[{header['date']}]不是有效的日期")
        for tag in NUMERIC_HEADER & header.keys():
            number(header[tag], f"表头{tag}")
        self._must_exist(self.customers, header["custcode"], "客户编码")
        self._must_exist(self.departments, header["deptcode"], "部门编码")
        if "typecode" in header:
            self._must_exist(self.sale_types, header["typecode"], "销售类型")
        if "personcode" in header:
            self._must_exist(self.persons, header["personcode"], "业务员编码")
        if not lines:
            raise SaleOrderRejected("表体不能为空，至少需要一行存货")
        for row, line in enumerate(lines, start=1):
            self._validate_line(row, line)

    def _validate_line(self, row: int, line: dict[str, str]) -> None:
        if not line.get("inventorycode"):
            raise SaleOrderRejected(f"第{row}行存货编码不能为空")
        if not line.get("quantity"):
            raise SaleOrderRejected(f"第{row}行数量不能为空")
        values = {tag: number(line[tag], f"第{row}行{tag}") for tag in NUMERIC_ENTRY & line.keys()}
        if values["quantity"] <= 0:
            raise SaleOrderRejected(f"第{row}行数量[{line['quantity']}]必须大于0")
        self._must_exist(self.inventory, line["inventorycode"], "存货编码")
        money, tax, total = values.get("money"), values.get("tax"), values.get("sum")
        if money is not None and tax is not None and total is not None and abs(money + tax - total) > _CENT:
            raise SaleOrderRejected(f"第{row}行金额不平：无税金额+税额≠价税合计")
        price = values.get("taxunitprice")
        if total is not None and price is not None and abs(total - price * values["quantity"]) > _CENT:
            raise SaleOrderRejected(f"第{row}行金额不平：价税合计≠含税单价×数量")

    def _refuse_if_shipped(self, order: SaleOrder, action: str) -> None:
        """U8 keeps a sale order a 发货单 refers to (text inferred, §1.6: not found publicly)."""
        key = order.code.casefold()
        for consignment in self.consignments.values():
            if any(line.get("cordercode", "").casefold() == key for line in consignment.lines):
                raise SaleOrderRejected(f"销售订单[{order.code}]已被发货单[{consignment.code}]参照，不能{action}！")

    @staticmethod
    def _must_exist(archive: Mapping[str, str], code: str, what: str) -> None:
        if code not in archive:
            raise SaleOrderRejected(f"{what}[{code}]不存在")

    def _existing(self, code: str) -> SaleOrder:
        if not code:
            raise SaleOrderRejected("单据号不能为空")
        order = self.orders.get(code.casefold())
        if order is None:
            raise SaleOrderRejected(f"销售订单号[{code}]不存在")
        return order

    def _next_code(self) -> str:
        # 10 digits: the width of cSOCode in the template (§1.3, §5.5).
        while True:
            self._last_auto += 1
            code = f"{self._last_auto:010d}"
            if code.casefold() not in self.orders:
                return code


def _check_widths(values: Mapping[str, str], widths: Mapping[str, int]) -> None:
    for tag, width in widths.items():
        if len(values.get(tag, "")) > width:
            raise SaleOrderRejected(TRUNCATED)


def is_date(text: str, fmt: str) -> bool:
    try:
        datetime.strptime(text, fmt)  # noqa: DTZ007 - a calendar date, no zone in U8
    except ValueError:
        return False
    return True


def _numbered(lines: list[dict[str, str]]) -> list[dict[str, str]]:
    """U8 fills ``irowno`` when the client leaves it out."""
    return [{**line, "irowno": line.get("irowno") or str(row)} for row, line in enumerate(lines, start=1)]


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _as_document(order: SaleOrder) -> dict[str, Any]:
    """An order for ``GET /_sandbox/u8/documents``: U8 field names, amounts as JSON numbers."""
    header = {tag: (_json_number(value) if tag in NUMERIC_HEADER else value) for tag, value in order.header.items()}
    doc: dict[str, Any] = {tag: header.get(tag) for tag in ("code", "custcode", "deptcode", "typecode")}
    doc.update({tag: header.get(tag) for tag in ("date", "maker", "memo")})
    doc.update(header)
    doc["u8key"], doc["created_at"] = order.u8key, order.created_at
    doc["lines"] = [
        {
            **dict.fromkeys(DOCUMENT_LINE_FIELDS),
            **{tag: (_json_number(v) if tag in NUMERIC_ENTRY else v) for tag, v in line.items()},
        }
        for line in order.lines
    ]
    return doc
