"""Yonyou U8 EAI simulator, ``GET/POST /U8EAI/import.asp``: reference/erp-protocols.md §1.1
(transport), §1.2 (``<ufinterface>`` envelope), §1.5 (reply), §1.8 (query) and §5 (what a
faithful simulator must do). The sales-order rules live in ``u8saleorder.py``.

U8 answers business outcomes with HTTP 200 and a ``<ufinterface roottag="return">`` document of
``<item succeed= dsc= key= u8key=>``; only a body it cannot read gets an HTTP 500 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.middleware import DefineMiddleware
from lxml import etree

from adapters.sandbox import u8consignment
from adapters.sandbox.pipeline import PartnerCall, PartnerCallMiddleware, current_call, error_page
from adapters.sandbox.state import SimulatedSystem
from adapters.sandbox.u8saleorder import SaleOrder, SaleOrderRejected, U8Store, children
from adapters.xmlsafe import UnsafeXmlError, parse

SYSTEM = "u8"
PATHS = ["/U8EAI/import.asp", "/u8eai/import.asp"]  # path case varies between sites (§1.1)
XML_TYPE = "text/xml"  # Litestar adds "; charset=utf-8" to text/* types
HTML_TYPE = "text/html"
_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
_WRITES = ("add", "edit", "delete")
_SUPPORTED_ROOTTAGS = ("saleorder", "consignment")  # 销售订单, 发货单 (§5.6)
#: The ``reject`` fault: a business refusal no retry can fix (a closed period, as in §1.6).
REJECT_DSC = "单据日期所在会计期间已经结账，不能保存单据！"


@dataclass
class Item:
    """One ``<item>`` of a return document (§1.5), attributes in U8's order."""

    key: str
    succeed: str
    dsc: str
    u8key: str = ""


class U8EaiController(Controller):
    """The ASP page of U8 EAI; every call runs through the sandbox pipeline as system ``u8``."""

    path = "/"
    middleware = [DefineMiddleware(PartnerCallMiddleware, system=SYSTEM)]

    @get(PATHS, media_type=HTML_TYPE, sync_to_thread=False)
    def alive(self) -> str:
        """A browser GET on import.asp shows 正常 (§1.1, P2)."""
        return "正常"

    @post(PATHS, status_code=200)
    async def import_document(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The raw XML body, whatever the content-type claims (§1.1)."""
        call = current_call(request)
        status, body, media_type = handle_import(call.state.store(SYSTEM), call)
        return Response(body, status_code=status, media_type=media_type)


def handle_import(store: U8Store, call: PartnerCall) -> tuple[int, bytes, str]:
    """Process one import.asp request; returns (HTTP status, body, content-type)."""
    try:
        root = parse(call.body)
    except (UnsafeXmlError, etree.XMLSyntaxError):
        call.outcome = "error"
        return 500, error_page("XML 文档格式错误，无法导入。").encode(), HTML_TYPE
    if not isinstance(root.tag, str) or root.tag.lower() != "ufinterface":
        call.outcome = "error"
        return 500, error_page("不是有效的 ufinterface 文档。").encode(), HTML_TYPE

    sender = root.get("sender", "")
    roottag = root.get("roottag", "").strip().lower()
    proc = root.get("proc", "").strip().lower()  # clients send add / ADD / Query alike (§1.2)
    reply = {"roottag": "return", "docid": root.get("docid", ""), "proc": proc, "sender": "u8"}
    reply.update({"receiver": sender, "request-roottag": roottag})
    documents = [el for _, el in children(root)]

    refusal = _envelope_refusal(store, sender, roottag, proc, documents)
    if refusal is not None:
        items = [Item("", "1", refusal)]
    elif call.fault == "reject":
        items = [Item(_code_of(el), "101", REJECT_DSC) for el in documents]
    elif proc == "query":
        try:
            records = _query(store, roottag, documents)
        except SaleOrderRejected as exc:
            items = [Item("", "101", exc.dsc)]
        else:
            return 200, _query_reply(root, sender, roottag, records), XML_TYPE
    elif roottag == "consignment":
        items = [_write_consignment(store, proc, el) for el in documents]
    else:
        items = [_write(store, proc, el) for el in documents]

    if any(item.succeed != "0" for item in items):
        call.outcome = "rejected"
    return 200, _return_reply(reply, items), XML_TYPE


def _envelope_refusal(
    store: U8Store, sender: str, roottag: str, proc: str, documents: list[etree._Element]
) -> str | None:
    """Why the whole request is refused before any document is looked at, if it is."""
    if sender not in store.senders:
        return "发送方未注册"
    if roottag not in _SUPPORTED_ROOTTAGS:
        return f"不支持的单据类型[{roottag}]"
    if proc not in (*_WRITES, "query"):
        return f"不支持的操作类型[{proc}]"
    if not documents:
        return "没有需要处理的单据"
    for el in documents:
        # roottag must name the child element (§1.2, T)
        if el.tag.lower() != roottag:
            return f"roottag[{roottag}]与单据节点[{el.tag}]不一致"
    return None


def _write(store: U8Store, proc: str, el: etree._Element) -> Item:
    operation = {"add": store.add, "edit": store.edit, "delete": store.delete}[proc]
    try:
        order = operation(el)
    except SaleOrderRejected as exc:
        return Item(_code_of(el), "101", exc.dsc)
    return Item(order.code, "0", "ok", order.u8key)


def _write_consignment(store: U8Store, proc: str, el: etree._Element) -> Item:
    if proc == "edit":
        return Item(_code_of(el), "101", "发货单不支持修改，请删除后重新增加")  # (inferred)
    operation = u8consignment.add if proc == "add" else u8consignment.delete
    try:
        consignment = operation(store, el)
    except SaleOrderRejected as exc:
        return Item(_code_of(el), "101", exc.dsc)
    # The add-reply key is the new cDLCode (E6); u8key its DLID (inferred).
    return Item(consignment.code, "0", "ok", consignment.dlid)


def _query(store: U8Store, roottag: str, documents: list[etree._Element]) -> list[etree._Element]:
    if roottag == "consignment":
        return [u8consignment.to_element(c) for el in documents for c in u8consignment.query(store, el)]
    return [_order_element(order) for el in documents for order in store.query(el)]


def _code_of(el: etree._Element) -> str:
    """The code a (possibly invalid) document names, for the ``key`` of its reply item."""
    if el.get("code"):
        return el.get("code", "")
    for tag, part in children(el):
        if tag == "header":
            for field, child in children(part):
                if field == "code":
                    return (child.text or "").strip()
    return ""


def _serialize(root: etree._Element) -> bytes:
    return (_DECLARATION + etree.tostring(root, encoding="unicode")).encode("utf-8")


def _return_reply(attrs: dict[str, str], items: list[Item]) -> bytes:
    root = etree.Element("ufinterface", attrs)
    for item in items:
        attrs = {"key": item.key, "succeed": item.succeed, "dsc": item.dsc, "u8key": item.u8key}
        etree.SubElement(root, "item", attrs)
    return _serialize(root)


def _query_reply(request: etree._Element, sender: str, roottag: str, records: list[etree._Element]) -> bytes:
    """Stored records in the template shape (§1.8): one ``<saleorder>``/``<consignment>`` each."""
    attrs = {"roottag": roottag, "docid": request.get("docid", ""), "proc": "query", "sender": "u8"}
    root = etree.Element("ufinterface", {**attrs, "receiver": sender})
    for record in records:
        root.append(record)
    return _serialize(root)


def _order_element(order: SaleOrder) -> etree._Element:
    el = etree.Element("saleorder")
    header = etree.SubElement(el, "header")
    etree.SubElement(header, "id").text = order.u8key
    etree.SubElement(header, "code").text = order.code
    for tag, value in order.header.items():
        if tag != "code":
            etree.SubElement(header, tag).text = value
    body = etree.SubElement(el, "body")
    for line in order.lines:
        entry = etree.SubElement(body, "entry")
        for tag, value in line.items():
            etree.SubElement(entry, tag).text = value
    return el


U8_EAI = SimulatedSystem(
    name=SYSTEM,
    controller=U8EaiController,
    new_store=U8Store,
    # Bigger bodies are refused by IIS/ASP with its 500 page, not with an EAI reply.
    max_body_bytes=5 * 1024 * 1024,
    oversize_status=500,
)
