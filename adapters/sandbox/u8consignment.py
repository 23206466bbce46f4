"""Yonyou U8 发货单 (consignments, ``roottag="consignment"``) in the simulated U8 EAI:
reference/erp-protocols.md §1.2, §4 and §5.6 ("``consignment`` add/query for shipment feedback").

A WMS or a U8 user creates them with ``proc="add"``; the gateway reads them back with
``proc="query"``. Tags follow the Yonyou template (T, ``Consignment.xml``); ``cebexpresscode`` (the
waybill, from the DispatchList column cEBExpressCode, D1) is accepted as well (inferred). The
rules are the template's: ``vouchertype`` 05/06, archives that must exist, ``warehouse_code``,
``inventory_code`` and ``quantity`` on every line; a line naming a sale order (``cordercode``,
``iorderrowno``) must match that order's customer, row and inventory and may not ship more than
it still has open (error texts inferred, §1.6). Add-reply ``key`` = the new cDLCode (E6).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lxml import etree

from adapters.sandbox.u8saleorder import (
    DATE_FORMATS,
    SaleOrder,
    SaleOrderRejected,
    U8Store,
    children,
    is_date,
    now_text,
    number,
    read_fields,
)

_DEFINES = {f"define{i}" for i in range(1, 17)}
HEADER_TAGS = frozenset(
    {"id", "outid", "code", "vouchertype", "saletype", "date", "deptcode", "personcode", "custcode"}
    | {"paycondition_code", "shippingchoice", "address", "currency_name", "currency_rate", "taxrate"}
    | {"beginflag", "returnflag", "remark", "maker", "sale_cons_flag", "retail_custname", "operation_type"}
    | {"cverifier", "cdeliverunit", "cdeliveradd", "ccontactname", "cofficephone", "cmobilephone"}
    | {"caddcode", "cgatheringplan", "dcreditstart", "icreditdays", "dgatheringdate", "bcredit", "warehouse"}
    | {"cebexpresscode"}  # (inferred) the waybill: DispatchList.cEBExpressCode (D1)
    | _DEFINES
)
ENTRY_TAGS = frozenset(
    {"headid", "warehouse_code", "inventory_code", "quantity", "num", "itb", "ccomunitcode", "cinvm_unit"}
    | {"iinvexchrate", "cinva_unit", "assistantunit", "quotedprice", "price", "taxprice", "money", "tax"}
    | {"sum", "discount", "natprice", "natmoney", "nattax", "natsum", "natdiscount", "batch", "remark"}
    | {"backflag", "overdate", "backquantity", "backnum", "discount1", "discount2", "inventory_printname"}
    | {"taxrate", "item_class", "item_classname", "item_code", "item_name", "retail_price", "retail_money"}
    | {"vendor_name", "unitrate", "unit_code", "ccorcode", "icorid", "ccusinvcode", "ccusinvname"}
    | {"ippartseqid", "ippartqty", "ippartid", "bqaneedcheck", "bqaurgency", "cmassunit", "imassdate"}
    | {"dmdate", "cordercode", "iorderrowno", "cvmivencode", "irowno", "expirationdate"}
    | {"expiratdatecalcu", "expirationitem", "reasoncode"}
    | {f"free{i}" for i in range(1, 11)}
    | {f"define{i}" for i in range(22, 38)}
    | {f"batchproperty{i}" for i in range(1, 11)}
)
REQUIRED_HEADER = ("vouchertype", "saletype", "date", "deptcode", "custcode", "maker")
REQUIRED_ENTRY = ("warehouse_code", "inventory_code", "quantity")
VOUCHER_TYPES = ("05", "06")  # 05 发货单, 06 委托代销发货单 (T)
#: Query conditions (§1.8 ``<field name=…>``): the 发货单's own code, or the sale order it ships.
_CODE_FIELDS = ("cdlcode", "code")
_ORDER_FIELDS = ("cordercode", "csocode")


@dataclass
class Consignment:
    """One stored 发货单: its tags as sent, lines numbered, U8's id and time of creation."""

    code: str
    dlid: str
    header: dict[str, str]
    lines: list[dict[str, str]]
    created_at: str


def add(store: U8Store, el: etree._Element) -> Consignment:
    """Validate and store a ``<consignment>``; the code is numbered (10 digits) when left empty."""
    header, lines = _read(el)
    _validate(store, header, lines)
    code = header.get("code") or _next_code(store)
    if code.casefold() in store.consignments:
        raise SaleOrderRejected(f"发货单号[{code}]已经存在，不可重复！")
    dlid = str(1_000_000_001 + len(store.consignments))
    numbered = [{**line, "irowno": line.get("irowno") or str(row)} for row, line in enumerate(lines, start=1)]
    consignment = Consignment(code, dlid, {**header, "code": code}, numbered, now_text())
    store.consignments[code.casefold()] = consignment
    return consignment


def delete(store: U8Store, el: etree._Element) -> Consignment:
    """Remove a 发货单 (a U8 user deleting it, so that its sale order can be changed again)."""
    code = el.get("code") or _read(el)[0].get("code", "")
    found = store.consignments.get(code.casefold()) if code else None
    if found is None:
        raise SaleOrderRejected(f"发货单号[{code}]不存在")
    del store.consignments[code.casefold()]
    return found


def query(store: U8Store, el: etree._Element) -> list[Consignment]:
    """发货单 matching ``<consignment code="…">`` and ``<field>`` conditions on their own code or
    the sale order their lines ship; conditions on one field are alternatives (``or``)."""
    own: set[str] = {el.get("code", "").casefold()} if el.get("code") else set()
    orders: set[str] = set()
    for field in el.iter("field", "FIELD", "Field"):
        name, operation = field.get("name", "").lower(), field.get("operation", "=").strip()
        if operation != "=" or name not in (*_CODE_FIELDS, *_ORDER_FIELDS):
            raise SaleOrderRejected(f"不支持的查询条件[{field.get('name', '')} {operation}]")
        (own if name in _CODE_FIELDS else orders).add(field.get("value", "").casefold())
    found = []
    for consignment in store.consignments.values():
        if own and consignment.code.casefold() not in own:
            continue
        if orders and not any(line.get("cordercode", "").casefold() in orders for line in consignment.lines):
            continue
        found.append(consignment)
    return found


def to_element(consignment: Consignment) -> etree._Element:
    """A stored 发货单 in the template shape, for a query reply."""
    el = etree.Element("consignment")
    header = etree.SubElement(el, "header")
    etree.SubElement(header, "id").text = consignment.dlid
    for tag, value in consignment.header.items():
        etree.SubElement(header, tag).text = value
    body = etree.SubElement(el, "body")
    for line in consignment.lines:
        entry = etree.SubElement(body, "entry")
        for tag, value in line.items():
            etree.SubElement(entry, tag).text = value
    return el


# --------------------------------------------------------------------------- template rules


def _read(el: etree._Element) -> tuple[dict[str, str], list[dict[str, str]]]:
    parts = dict(reversed(children(el)))
    header_el, body_el = parts.get("header"), parts.get("body")
    header = read_fields(header_el, HEADER_TAGS) if header_el is not None else {}
    entries = [c for tag, c in children(body_el) if tag == "entry"] if body_el is not None else []
    return header, [read_fields(entry, ENTRY_TAGS) for entry in entries]


def _validate(store: U8Store, header: dict[str, str], lines: list[dict[str, str]]) -> None:
    for tag in REQUIRED_HEADER:
        if not header.get(tag):
            raise SaleOrderRejected(f"表头字段[{tag}]不能为空")
    if header["vouchertype"] not in VOUCHER_TYPES:
        raise SaleOrderRejected(f"单据类型[{header['vouchertype']}]不正确")
    if not any(is_date(header["date"], fmt) for fmt in DATE_FORMATS):
        raise SaleOrderRejected(f"单据日期[{header['date']}]不是有效的日期")
    _must_exist(store.sale_types, header["saletype"], "销售类型")
    _must_exist(store.departments, header["deptcode"], "部门编码")
    _must_exist(store.customers, header["custcode"], "客户编码")
    if header.get("personcode"):
        _must_exist(store.persons, header["personcode"], "业务员编码")
    if not lines:
        raise SaleOrderRejected("表体不能为空，至少需要一行存货")
    returning = header.get("returnflag") == "1"
    shipping: dict[tuple[str, int], Decimal] = {}
    for row, line in enumerate(lines, start=1):
        for tag in REQUIRED_ENTRY:
            if not line.get(tag):
                raise SaleOrderRejected(f"第{row}行{tag}不能为空")
        _must_exist(store.warehouses, line["warehouse_code"], "仓库编码")
        _must_exist(store.inventory, line["inventory_code"], "存货编码")
        quantity = number(line["quantity"], f"第{row}行数量")
        if (quantity <= 0) != returning or quantity == 0:
            raise SaleOrderRejected(f"第{row}行数量[{line['quantity']}]不正确")
        if line.get("cordercode"):
            key = _order_row(store, header, row, line)
            shipping[key] = shipping.get(key, Decimal(0)) + quantity
    for (code, rowno), quantity in shipping.items():
        if not returning and quantity > _open_quantity(store, code, rowno):
            raise SaleOrderRejected(f"销售订单[{code}]第{rowno}行累计发货数量超过订单数量")


def _order_row(store: U8Store, header: dict[str, str], row: int, line: dict[str, str]) -> tuple[str, int]:
    order: SaleOrder | None = store.orders.get(line["cordercode"].casefold())
    if order is None:
        raise SaleOrderRejected(f"第{row}行销售订单[{line['cordercode']}]不存在")
    if order.header.get("custcode") != header["custcode"]:
        raise SaleOrderRejected(f"第{row}行客户与销售订单[{order.code}]的客户不一致")
    rowno_text = line.get("iorderrowno", "")
    if not rowno_text:
        # Without a row U8 picks the first open row of the same inventory (inferred).
        match = next((ln for ln in order.lines if ln.get("inventorycode") == line["inventory_code"]), None)
        if match is None:
            raise SaleOrderRejected(f"第{row}行存货不在销售订单[{order.code}]中")
        line["iorderrowno"] = match["irowno"]  # U8 links the line to the row it found
        return order.code, int(match["irowno"])
    if not rowno_text.isdigit() or not 1 <= int(rowno_text) <= len(order.lines):
        raise SaleOrderRejected(f"第{row}行订单行号[{rowno_text}]在销售订单[{order.code}]中不存在")
    rowno = int(rowno_text)
    if order.lines[rowno - 1].get("inventorycode") != line["inventory_code"]:
        raise SaleOrderRejected(f"第{row}行存货与销售订单[{order.code}]第{rowno}行的存货不一致")
    return order.code, rowno


def _open_quantity(store: U8Store, code: str, rowno: int) -> Decimal:
    """What row ``rowno`` of order ``code`` has not shipped yet (iQuantity − iFHQuantity, §4)."""
    order = store.orders[code.casefold()]
    ordered = number(order.lines[rowno - 1]["quantity"], "数量")
    shipped = Decimal(0)
    for consignment in store.consignments.values():
        for line in consignment.lines:
            if line.get("cordercode", "").casefold() == code.casefold() and line.get("iorderrowno") == str(rowno):
                shipped += number(line["quantity"], "数量")
    return ordered - shipped


def _must_exist(archive: dict[str, str], code: str, what: str) -> None:
    if code not in archive:
        raise SaleOrderRejected(f"{what}[{code}]不存在")


def _next_code(store: U8Store) -> str:
    serial = len(store.consignments)
    while True:
        serial += 1
        code = f"{serial:010d}"
        if code.casefold() not in store.consignments:
            return code


def as_document(consignment: Consignment) -> dict[str, Any]:
    """A 发货单 as JSON builtins (tags as sent, lines), for tests and the control plane."""
    return {**consignment.header, "dlid": consignment.dlid, "lines": [dict(line) for line in consignment.lines]}
