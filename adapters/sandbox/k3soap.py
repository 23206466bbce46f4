"""K3 WISE SOAP order service simulator, ``/k3soap/ERPService`` (CONTRACT §4, system ``k3soap``):
reference/erp-protocols.md §3.5 (a partner-built WCF wrapper: ERPService, BasicHttpBinding,
``addSEorder`` answering a ``ServiceResult`` with ``Status`` 0 = ok) and §5.

``GET ?wsdl`` serves ``adapters/k3/ERPService.wsdl`` with the ``soap:address`` set to this
sandbox's own URL. ``POST`` takes SOAP 1.1 document/literal as WCF BasicHttpBinding does: the
``text/xml`` content type (else HTTP 415), a ``SOAPAction`` naming an operation, a body checked
against the WSDL's schemas (``k3soap_schema.py``). A message WCF could not dispatch or deserialize
gets HTTP 500 with a SOAP fault, faultcode ``s:Client``; a business refusal gets HTTP 200 and
``Status ≠ 0`` with a Chinese ``Message``, as a K3 wrapper writes it (texts inferred, §6).
The ``reject`` fault refuses a write as a closed period would, writing nothing.
``POST /_sandbox/k3soap/shipments`` records a sales outstock bill (销售出库) against an order, as
the warehouse would in K3; ``getSEOutstock`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.middleware import DefineMiddleware
from lxml import etree

from adapters.sandbox.k3soap_schema import ServiceShape, ShapeError, bundled_wsdl, wsdl_with_address
from adapters.sandbox.pipeline import PartnerCall, PartnerCallMiddleware, current_call
from adapters.sandbox.state import SimulatedSystem
from adapters.xmlsafe import UnsafeXmlError, parse

SYSTEM = "k3soap"
PATH = "/k3soap/ERPService"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MODELS_NS = "http://schemas.datacontract.org/2004/07/ERPServer.Models"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_TYPE = "text/xml; charset=utf-8"
#: The ``reject`` fault: a refusal no retry can fix (the order date's period is closed).
REJECT_MESSAGE = "单据日期所在会计期间已结账，不能保存单据！"
_WRITES = frozenset({"addSEorder", "updateSEorder", "cancelOrder"})
SHAPE = ServiceShape(bundled_wsdl())
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # K3 keeps local time


class Refused(Exception):
    """A business refusal: ``Status`` 1 and this ``Message``."""


@dataclass
class SEOrder:
    """One stored sales order: the members as received, plus what K3 adds."""

    members: dict[str, Any]
    interid: int
    created_at: str
    closed: bool = False


@dataclass
class K3SoapStore:
    """The seeded base data of the account set behind the wrapper, and its sales orders."""

    customers: dict[str, str]
    departments: dict[str, str]
    employees: dict[str, str]
    units: dict[str, str]
    items: dict[str, str]
    # by casefolded BillNO: SQL Server's default collation compares without case (inferred)
    orders: dict[str, SEOrder] = field(default_factory=dict)
    outstocks: list[dict[str, Any]] = field(default_factory=list)  # FormSEOutStock members

    @classmethod
    def from_seed(cls, seed: Mapping[str, Any]) -> K3SoapStore:
        return cls(
            customers=dict(seed.get("customers", {})),
            departments=dict(seed.get("departments", {})),
            employees=dict(seed.get("employees", {})),
            units=dict(seed.get("units", {})),
            items=dict(seed.get("items", {})),
        )

    def add(self, order: dict[str, Any]) -> SEOrder:
        bill_no = self._check(order)
        if bill_no.casefold() in self.orders:
            raise Refused(f"单据编号[{bill_no}]已存在，不能重复保存！")
        stored = SEOrder(order, len(self.orders) + 1, datetime.now(UTC).isoformat(timespec="seconds"))
        self.orders[bill_no.casefold()] = stored
        return stored

    def update(self, order: dict[str, Any]) -> SEOrder:
        bill_no = self._check(order)
        stored = self.orders.get(bill_no.casefold())
        if stored is None:
            raise Refused(f"单据编号[{bill_no}]不存在，不能修改！")
        if stored.closed:
            raise Refused(f"单据[{bill_no}]已关闭，不能修改！")
        stored.members = order
        return stored

    def cancel(self, bill_no: str) -> SEOrder:
        stored = self.orders.get(bill_no.strip().casefold())
        if stored is None:
            raise Refused(f"订单[{bill_no}]不存在！")
        stored.closed = True
        return stored

    def record_shipment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A sales outstock against an order: ``{"order": BillNO, "lines"?: [{"item", "qty"}],
        "date"?, "carrier"?, "waybill"?}``; every row of the order when no lines are given."""
        order = self.orders.get(str(spec.get("order", "")).strip().casefold())
        if order is None:
            raise Refused(f"订单[{spec.get('order')}]不存在！")
        rows = {e["Number"]: (row, e) for row, e in enumerate(order.members["Entrys"]["FormSEOrderEntry"], 1)}
        wanted = spec.get("lines") or [{"item": item, "qty": e["Qty"]} for item, (_, e) in rows.items()]
        entries = []
        for line in wanted:
            if line.get("item") not in rows:
                raise Refused(f"物料[{line.get('item')}]不在订单[{order.members['BillNO']}]中！")
            qty = Decimal(str(line.get("qty")))
            if not qty.is_finite() or qty <= 0:
                raise Refused("数量必须大于0！")
            row, _ = rows[line["item"]]
            entries.append({"OrderEntry": row, "OrderNO": order.members["BillNO"], "ProductNumber": line["item"]})
            entries[-1]["Qty"] = qty
        date = datetime.fromisoformat(str(spec.get("date") or datetime.now(CHINA).strftime("%Y-%m-%dT%H:%M:%S")))
        outstock = {
            "BillNO": f"XOUT{len(self.outstocks) + 1:06d}",
            "CustNumber": order.members.get("CustNumber"),
            "Date": date,
            "EntryList": {"FormSEOutStockEntry": entries},
            "ExpressCompany": spec.get("carrier"),
            "ExpressNO": spec.get("waybill"),
        }
        self.outstocks.append(outstock)
        return outstock

    def outstocks_of(self, bill_no: str) -> list[dict[str, Any]]:
        key = bill_no.strip().casefold()
        return [
            o
            for o in self.outstocks
            if any(e["OrderNO"].casefold() == key for e in o["EntryList"]["FormSEOutStockEntry"])
        ]

    def _check(self, order: dict[str, Any]) -> str:
        """The bill number of a valid order; ``Refused`` naming the first fault (§5: seeded codes)."""
        bill_no = (order.get("BillNO") or "").strip()
        if not bill_no:
            raise Refused("单据编号不能为空！")
        _known(self.customers, order.get("CustNumber"), "购货单位代码")
        _known(self.departments, order.get("DeptNumber"), "部门代码")
        if order.get("EmpNumber"):
            _known(self.employees, order["EmpNumber"], "业务员代码")
        entries = (order.get("Entrys") or {}).get("FormSEOrderEntry") or []
        if not entries or any(e is None for e in entries):
            raise Refused("订单分录不能为空！")
        for row, entry in enumerate(entries, start=1):
            _known(self.items, entry.get("Number"), f"第{row}行物料代码")
            if entry.get("UnitNumber"):
                _known(self.units, entry["UnitNumber"], f"第{row}行计量单位")
            if entry.get("Qty") is None or entry["Qty"] <= 0:
                raise Refused(f"第{row}行数量必须大于0！")
            if entry.get("Price") is not None and entry["Price"] < 0:
                raise Refused(f"第{row}行单价不能为负数！")
        return bill_no

    def documents(self) -> list[dict[str, Any]]:
        return [
            {
                **_plain(o.members),
                "FInterID": o.interid,
                "closed": o.closed,
                "created_at": o.created_at,
                "outstocks": [x["BillNO"] for x in self.outstocks_of(bill_no)],
            }
            for bill_no, o in self.orders.items()
        ]


def _known(table: dict[str, str], code: Any, label: str) -> None:
    if not code or str(code).strip() not in table:
        raise Refused(f"{label}[{code or ''}]不存在！")


def _plain(value: Any) -> Any:
    """Members as JSON: decimals as exact text, times as ISO text, the entry array flattened."""
    if isinstance(value, dict):
        if _is_array(value):
            return [_plain(v) for v in next(iter(value.values()))]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_PIPELINE = DefineMiddleware(PartnerCallMiddleware, system=SYSTEM)


class K3SoapController(Controller):
    """The WCF endpoint: its calls run through the sandbox pipeline as system ``k3soap``; the
    ``/_sandbox/k3soap`` control route beside it does not (it is not the partner's)."""

    path = "/"

    @get(PATH, sync_to_thread=False, middleware=[_PIPELINE])
    def wsdl(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """``?wsdl`` (any case) → the WSDL with this sandbox's address; else WCF's help page."""
        if not any(k.lower() == "wsdl" for k in request.query_params):
            page = "<html><body><p>ERPService 服务：请使用 ?wsdl 获取服务说明。</p></body></html>"
            return Response(page.encode(), media_type="text/html; charset=utf-8")
        address = str(request.url.with_replacements(query=""))
        return Response(wsdl_with_address(bundled_wsdl(), address), media_type=XML_TYPE)

    @post(PATH, status_code=200, middleware=[_PIPELINE])
    async def call(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        call = current_call(request)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "text/xml":
            call.outcome = "error"
            text = f"Cannot process the message because the content type '{content_type}' was not the expected type 'text/xml; charset=utf-8'."  # noqa: E501
            return Response(text.encode(), status_code=415, media_type="text/plain")
        action = request.headers.get("soapaction", "").strip().strip('"')
        status, body = handle(call.state.store(SYSTEM), call, action)
        return Response(body, status_code=status, media_type=XML_TYPE)

    @post("/_sandbox/k3soap/shipments", status_code=200)
    async def record_shipment(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Record a sales outstock against an order (``K3SoapStore.record_shipment``)."""
        try:
            spec = msgspec.json.decode(await request.body())
            if not isinstance(spec, dict):
                raise Refused("body must be a JSON object")
            outstock = request.app.state.sandbox.store(SYSTEM).record_shipment(spec)
        except (msgspec.DecodeError, ValueError, ArithmeticError) as exc:
            return Response({"error": str(exc)}, status_code=400)
        except Refused as exc:
            return Response({"error": str(exc)}, status_code=400)
        return Response(_plain(outstock))


def handle(store: K3SoapStore, call: PartnerCall, action: str) -> tuple[int, bytes]:
    """One SOAP request → (HTTP status, envelope)."""
    try:
        op, request = _read(call.body, action)
    except ShapeError as exc:
        call.outcome = "error"
        return 500, _fault("s:Client", str(exc))
    if call.fault == "reject" and op.name in _WRITES:
        call.outcome = "rejected"
        return 200, _reply(op.response, op.name, _result(1, REJECT_MESSAGE, None))
    try:
        result = _dispatch(store, op.name, request)
    except Refused as exc:
        call.outcome = "rejected"
        result = _result(1, str(exc), (request.get("order") or {}).get("BillNO") or request.get("orderNo"))
    return 200, _reply(op.response, op.name, result)


def _read(body: bytes, action: str) -> tuple[Any, dict[str, Any]]:
    try:
        root = parse(body)
    except (UnsafeXmlError, etree.XMLSyntaxError) as exc:
        raise ShapeError(f"The message is not well-formed XML ({type(exc).__name__})") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise ShapeError("The message is not a SOAP 1.1 envelope")
    parts = [el for el in root if isinstance(el.tag, str)]
    bodies = [el for el in parts if el.tag == f"{{{SOAP_ENV}}}Body"]
    if len(bodies) != 1 or any(el.tag not in (f"{{{SOAP_ENV}}}Header", f"{{{SOAP_ENV}}}Body") for el in parts):
        raise ShapeError("The envelope must hold an optional Header and one Body")
    wrappers = [el for el in bodies[0] if isinstance(el.tag, str)]
    if len(wrappers) != 1:
        raise ShapeError("The SOAP body must hold exactly one element")
    op = SHAPE.operation_for(action, etree.QName(wrappers[0]))
    return op, SHAPE.read_request(op, wrappers[0])


def _dispatch(store: K3SoapStore, name: str, request: dict[str, Any]) -> dict[str, Any]:
    if name == "addSEorder":
        stored = store.add(request.get("order") or {})
        return _result(0, "保存成功", stored.members["BillNO"])
    if name == "updateSEorder":
        stored = store.update(request.get("order") or {})
        return _result(0, "修改成功", stored.members["BillNO"])
    if name == "cancelOrder":
        stored = store.cancel(request.get("orderNo") or "")
        return _result(0, "订单已关闭", stored.members["BillNO"])
    if name == "getSEOutstock":
        outstocks = store.outstocks_of(request.get("orderNo") or "")
        return {"Message": f"共{len(outstocks)}张出库单", "OutStocks": {"FormSEOutStock": outstocks}, "Status": 0}
    bill_no = (request.get("billNO") or "").strip()
    found = store.orders.get(bill_no.casefold())
    return {"Message": "查询成功" if found else "未找到单据", "Order": found.members if found else None, "Status": 0}


def _result(status: int, message: str, bill_no: str | None) -> dict[str, Any]:
    return {"BillNO": bill_no, "Message": message, "Status": status}


def _reply(wrapper: etree.QName, op_name: str, result: dict[str, Any]) -> bytes:
    """The response envelope as WCF writes it: the wrapper in the service namespace, the result's
    members in the data contract namespace (prefix ``a``), ``i:nil`` for empty members."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"s": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    response = etree.SubElement(body, wrapper.text, nsmap={None: wrapper.namespace})
    result_el = etree.SubElement(
        response, f"{{{wrapper.namespace}}}{op_name}Result", nsmap={"a": MODELS_NS, "i": XSI_NS}
    )
    _write_members(result_el, result)
    return etree.tostring(envelope, encoding="utf-8")


def _write_members(parent: etree._Element, members: dict[str, Any]) -> None:
    for name in sorted(members):  # DataContractSerializer's alphabetical member order
        value = members[name]
        if isinstance(value, dict) and _is_array(value):
            array = etree.SubElement(parent, f"{{{MODELS_NS}}}{name}")
            [(item_name, items)] = value.items()
            for item in items:
                _write_members(etree.SubElement(array, f"{{{MODELS_NS}}}{item_name}"), item or {})
            continue
        el = etree.SubElement(parent, f"{{{MODELS_NS}}}{name}")
        if value is None:
            el.set(f"{{{XSI_NS}}}nil", "true")
        elif isinstance(value, dict):
            _write_members(el, value)
        elif isinstance(value, bool):
            el.text = "true" if value else "false"
        elif isinstance(value, Decimal):
            el.text = format(value, "f")
        elif isinstance(value, datetime):
            el.text = value.isoformat()
        else:
            el.text = str(value)


def _is_array(value: dict[str, Any]) -> bool:
    """A DataContract collection as read by ``k3soap_schema``: ``{item element name: [items]}``."""
    return len(value) == 1 and isinstance(next(iter(value.values())), list)


def _fault(code: str, message: str) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"s": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    reason = etree.SubElement(fault, "faultstring")
    reason.text = message
    reason.set("{http://www.w3.org/XML/1998/namespace}lang", "zh-CN")
    return etree.tostring(envelope, encoding="utf-8")


K3_SOAP = SimulatedSystem(
    name=SYSTEM,
    controller=K3SoapController,
    new_store=K3SoapStore.from_seed,
    # WCF's default maxReceivedMessageSize is 65,536 bytes; larger bodies get HTTP 413.
    max_body_bytes=64 * 1024,
    oversize_status=413,
)
