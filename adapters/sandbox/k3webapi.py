"""Kingdee K3 WISE WebAPI simulator, ``/K3API/{ObjectTypeId}/{Operation}?token=``:
reference/erp-protocols.md §3.1 (Token/Create), §3.2 (URL pattern, raw JSON bodies), §3.3 (SO
Save/Update), §3.4 (the ``{"StatusCode","Message","Data"}`` envelope, GetList, GetDetail,
CheckBill), §4 (``Delivery_Notice``/``Sales_Delivery`` read-back) and §5 "K3 WISE WebAPI".

Every answer is HTTP 200 with the envelope; ``StatusCode == 200`` is success. A login for an
account set ends that set's previous token (one live session per 账套, as K3 binds the token to
it), so a fleet of workers that each log in on their own throw each other out: ``GET
/_sandbox/k3/sessions`` counts logins per account set to make that visible. ``POST
/_sandbox/k3/sessions`` shortens the validity of new tokens or ends the live ones;
``POST /_sandbox/k3/shipments`` records a 发货通知/销售出库 against an SO (what a warehouse clerk
does in K3). The rules of the bills are ``k3store.py``'s.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post, route
from litestar.enums import HttpMethod
from litestar.middleware import DefineMiddleware

from adapters.sandbox.k3store import SHIPMENT_OBJECTS, Bill, K3Rejected, K3Store, ci
from adapters.sandbox.pipeline import PartnerCall, PartnerCallMiddleware, current_call
from adapters.sandbox.state import SimulatedSystem

SYSTEM = "k3"
JSON_TYPE = "application/json; charset=utf-8"
PATHS = ["/K3API/{object_type:str}/{operation:str}", "/k3api/{object_type:str}/{operation:str}"]
#: The ``reject`` fault: a business refusal no retry can fix (a closed period).
REJECT_MESSAGE = "单据日期所在的会计期间已结账，不能保存单据"
_WRITES = frozenset({"save", "update", "delete", "checkbill"})
_TEMPLATE = {
    "Page1": [
        {
            "FBillNo": "",
            "Fdate": "",
            "FCustID": {"FNumber": "", "FName": ""},
            "FDeptID": {"FNumber": ""},
            "FEmpID": {"FNumber": ""},
            "FCurrencyID": {"FNumber": "RMB"},
            "FExchangeRate": "1",
            "FExplanation": "",
        }
    ],
    "Page2": [
        {
            "FItemID": {"FNumber": "", "FName": ""},
            "FUnitID": {"FNumber": ""},
            "Fauxqty": "0",
            "Fauxprice": "0",
            "FAuxTaxPrice": "0",
            "FCess": "0",
            "Famount": "0",
            "FAllAmount": "0",
            "FDate1": "",
            "Fnote": "",
        }
    ],
}
AnyRequest = Request[Any, Any, Any]


def envelope(status: int, message: str, data: Any = None) -> bytes:
    return msgspec.json.encode({"StatusCode": status, "Message": message, "Data": data})


class K3WebApiController(Controller):
    """``/K3API``: the API routes run through the sandbox pipeline as system ``k3``; the
    ``/_sandbox/k3`` control routes beside them do not (they are not K3's)."""

    path = "/"

    @route(
        PATHS,
        http_method=[HttpMethod.GET, HttpMethod.POST],
        status_code=200,
        middleware=[DefineMiddleware(PartnerCallMiddleware, system=SYSTEM)],
    )
    async def api(self, request: AnyRequest) -> Response[bytes]:
        call = current_call(request)
        object_type, operation = request.path_params["object_type"], request.path_params["operation"]
        query = {k.casefold(): v for k, v in request.query_params.items()}
        status, message, data = handle(call, request.method, object_type, operation, query)
        if status != 200 and call.outcome == "ok":
            call.outcome = "rejected"
        return Response(envelope(status, message, data), status_code=200, media_type=JSON_TYPE)

    @get("/_sandbox/k3/sessions", sync_to_thread=False)
    def sessions(self, request: AnyRequest) -> dict[str, Any]:
        """Logins per account set, the live sessions, and the tokens refused."""
        return _store(request).sessions_view()

    @post("/_sandbox/k3/sessions", status_code=200)
    async def control_sessions(self, request: AnyRequest) -> Response[dict[str, Any]]:
        """``{"validity_s": N}`` for tokens issued from now on; ``{"expire": true, "account_set"?}``
        ends the live sessions now (the next call with their token is refused as expired)."""
        store = _store(request)
        try:
            body = msgspec.json.decode(await request.body() or b"{}")
            if "validity_s" in body:
                validity = float(body["validity_s"])
                if validity <= 0:
                    raise ValueError("validity_s must be positive")
                store.validity_s = validity
        except (msgspec.DecodeError, TypeError, ValueError, AttributeError) as exc:
            return Response({"error": str(exc)}, status_code=400)
        ended = store.expire(body.get("account_set")) if body.get("expire") else 0
        return Response({**store.sessions_view(), "ended": ended})

    @post("/_sandbox/k3/shipments", status_code=200)
    async def record_shipment(self, request: AnyRequest) -> Response[dict[str, Any]]:
        """Record a shipment against an SO: ``{"object": "Sales_Delivery" | "Delivery_Notice",
        "order": FBillNo, "lines"?: [{"item": FNumber, "qty"}], "date"?, "header"?}``."""
        try:
            spec = msgspec.json.decode(await request.body())
            if not isinstance(spec, dict):
                raise K3Rejected("body must be a JSON object")
            bill = _store(request).record_shipment(spec)
        except msgspec.DecodeError as exc:
            return Response({"error": str(exc)}, status_code=400)
        except K3Rejected as exc:
            return Response({"error": exc.message}, status_code=400)
        return Response({"object": bill.object, "FBillNo": bill.bill_no, "FInterID": bill.inter_id})


def _store(request: AnyRequest) -> K3Store:
    return request.app.state.sandbox.store(SYSTEM)


def handle(
    call: PartnerCall, method: str, object_type: str, operation: str, query: dict[str, str]
) -> tuple[int, str, Any]:
    """One API call; returns (StatusCode, Message, Data). Nothing is written unless it is 200."""
    store: K3Store = call.state.store(SYSTEM)
    obj, op = object_type.casefold(), operation.casefold()
    try:
        if (obj, op) == ("token", "create"):
            session = store.login(query.get("authoritycode", ""))
            data = {
                "Token": session.token,
                "Code": session.account_set,
                "Validity": store.validity_s,
                "IPAddress": "127.0.0.1",
                "Language": "chs",
                "Create": session.created,
            }
            return 200, "获取Token成功", data
        store.check_token(query.get("token", ""))
        if obj not in ("so", *SHIPMENT_OBJECTS):
            raise K3Rejected(f"不支持的业务对象[{object_type}]", 404)
        if op == "gettemplate":
            return 200, "成功", _TEMPLATE if obj == "so" else {"Page1": [{}], "Page2": [{}]}
        if method != "POST":
            raise K3Rejected(f"操作[{operation}]必须使用POST", 405)
        try:
            body = msgspec.json.decode(call.body)
        except msgspec.DecodeError as exc:
            raise K3Rejected("请求内容不是有效的JSON格式") from exc
        if op in _WRITES and call.fault == "reject":
            raise K3Rejected(REJECT_MESSAGE)
        return _operate(store, obj, op, operation, body)
    except K3Rejected as exc:
        return exc.status, exc.message, None


def _operate(store: K3Store, obj: str, op: str, operation: str, body: Any) -> tuple[int, str, Any]:
    data = ci(ci(body).get("data"))
    if op == "getlist":
        return 200, "成功", store.get_list(obj, data)
    if op == "getdetail":
        return 200, "成功", store.detail(obj, str(data.get("fbillno") or ""))
    if obj != "so":
        raise K3Rejected(f"业务对象[{obj}]不支持操作[{operation}]", 404)
    if op == "save":
        return 200, "保存成功", _receipt(store.save(body))
    if op == "update":
        return 200, "修改成功", _receipt(store.update(body))
    if op == "delete":
        return 200, "删除成功", _receipt(store.delete(str(data.get("fbillno") or "")))
    if op == "checkbill":
        bill = store.check(str(data.get("fbillno") or ""), str(data.get("fcheckdirection") or ""))
        return 200, "审核成功", _receipt(bill)
    raise K3Rejected(f"不支持的操作[{operation}]", 404)


def _receipt(bill: Bill) -> dict[str, Any]:
    """K4 reads ``Data.BillNo``; ``FInterID`` beside it is inferred."""
    return {"BillNo": bill.bill_no, "FInterID": bill.inter_id}


K3_WEBAPI = SimulatedSystem(name=SYSTEM, controller=K3WebApiController, new_store=K3Store)
