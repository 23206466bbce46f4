"""Yonyou U8+ OpenAPI simulator, ``/u8openapi/...``: reference/erp-protocols.md §2 (token, trade id,
``saleorder/add``, async result, read APIs) and §5 "U8 OpenAPI" (what a faithful simulator must do).

The real relay lives at ``https://api.yonyouup.com`` with these paths under the root; here they are
under ``/u8openapi``. Every answer is HTTP 200 JSON ``{"errcode", "errmsg", ...}``, ``errcode ==
"0"`` meaning success (O1); only the pipeline's faults give other statuses. The state and the
rules are ``u8openapi_store.py``'s.

(inferred) paths, not in the reference: ``POST api/saleorder/edit``, ``POST api/saleorder/delete``
and ``POST api/consignment/add`` (the last one so tests and the demo can record a shipment). The
result URL of an asynchronous ``add`` is ``/u8openapi/result?requestid=`` (O5 has it at the root).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.middleware import DefineMiddleware

from adapters.sandbox.pipeline import PartnerCall, PartnerCallMiddleware, current_call
from adapters.sandbox.state import SimulatedSystem
from adapters.sandbox.u8openapi_store import E_BUSINESS, REJECT_MSG, OpenApiError, U8OpenApiStore

SYSTEM = "u8openapi"
JSON_TYPE = "application/json"
AnyRequest = Request[Any, Any, Any]
#: What the ``garbled_replies`` knob sends: JSON cut off mid-object, after the order was written.
GARBLED = b'{"errcode":"0","errmsg":"\xe6\x88\x90\xe5\x8a\x9f","id":"'


def _params(request: AnyRequest) -> dict[str, str]:
    return {key: request.query_params.get(key) or "" for key in request.query_params}


def _json(data: dict[str, Any]) -> Response[bytes]:
    return Response(msgspec.json.encode(data), status_code=200, media_type=JSON_TYPE)


def _answer(call: PartnerCall, work: Callable[[], dict[str, Any]]) -> Response[bytes]:
    """Run ``work``; an ``OpenApiError`` becomes the HTTP 200 error object of §5."""
    try:
        return _json(work())
    except OpenApiError as exc:
        call.outcome = "rejected" if exc.code == E_BUSINESS else "error"
        return _json(exc.reply())


def _store(request: AnyRequest) -> U8OpenApiStore:
    return current_call(request).state.store(SYSTEM)


class U8OpenApiController(Controller):
    """The relay's routes; every call runs through the sandbox pipeline as system ``u8openapi``."""

    path = "/u8openapi"
    middleware = [DefineMiddleware(PartnerCallMiddleware, system=SYSTEM)]

    @get("/system/token", sync_to_thread=False)
    def token(self, request: AnyRequest) -> Response[bytes]:
        """``{"errcode":"0","token":{"id","appKey","expiresIn"}}`` (§2, O3)."""
        p, store = _params(request), _store(request)
        return _answer(
            current_call(request),
            lambda: store.issue_token(p.get("from_account", ""), p.get("app_key", ""), p.get("app_secret", "")),
        )

    @get("/system/tradeid", sync_to_thread=False)
    def tradeid(self, request: AnyRequest) -> Response[bytes]:
        """``{"errcode":"0","errmsg":"成功","trade":{"id":…}}`` (O1); needs a live token."""
        p, store = _params(request), _store(request)

        def work() -> dict[str, Any]:
            store.check_token(p, to_account=False)
            return store.issue_trade_id()

        return _answer(current_call(request), work)

    @post("/api/saleorder/add", status_code=200, sync_to_thread=False)
    def add(self, request: AnyRequest) -> Response[bytes]:
        """Sync (``sync`` given and not 0): the result at once; else ``{"url"}`` to poll (§2, O3–O5)."""
        call, p, store = current_call(request), _params(request), _store(request)
        try:
            store.check_token(p)
        except OpenApiError as exc:
            call.outcome = "error"
            return _json(exc.reply())
        try:
            result = store.add_saleorder(p, call.body, reject=call.fault == "reject")
        except OpenApiError as exc:
            call.outcome = "rejected" if exc.code == E_BUSINESS else "error"
            if exc.code != E_BUSINESS or _sync(p):
                return _json(exc.reply())
            result = exc.reply()  # asynchronous: the rejection is the request's final result
        if store.garbled_replies > 0:
            store.garbled_replies -= 1
            call.outcome = "error"
            return Response(GARBLED, status_code=200, media_type=JSON_TYPE)
        if _sync(p):
            return _json(result)
        request_id = store.start_request(result)
        base = str(request.base_url).rstrip("/")
        return _json(
            {
                "errcode": "0",
                "errmsg": "已受理",
                "tradeid": p.get("tradeid", ""),
                "url": f"{base}{self.path}/result?requestid={request_id}",
            }
        )

    @get("/result", sync_to_thread=False)
    def result(self, request: AnyRequest) -> Response[bytes]:
        """An asynchronous request: ``status="processing"`` first, then the add's result (inferred)."""
        store, request_id = _store(request), request.query_params.get("requestid") or ""
        return _answer(current_call(request), lambda: store.poll(request_id))

    @post("/api/saleorder/edit", status_code=200, sync_to_thread=False)
    def edit(self, request: AnyRequest) -> Response[bytes]:
        """(inferred) Replace an order's header and lines; refused once it is shipped."""
        return self._write(request, lambda store, body: store.edit_saleorder(body))

    @post("/api/saleorder/delete", status_code=200, sync_to_thread=False)
    def delete(self, request: AnyRequest) -> Response[bytes]:
        """(inferred) Delete an unshipped order; an unknown code is an error (…不存在)."""
        return self._write(request, lambda store, body: store.delete_saleorder(body))

    @post("/api/consignment/add", status_code=200, sync_to_thread=False)
    def add_consignment(self, request: AnyRequest) -> Response[bytes]:
        """(inferred) Record a 发货单 against stored sale orders (``cordercode`` per line, §4)."""
        return self._write(request, lambda store, body: store.add_consignment(body))

    @get("/api/saleorderlist/batch_get", sync_to_thread=False)
    def saleorder_list(self, request: AnyRequest) -> Response[bytes]:
        """``date_begin``, ``date_end``, ``state``, ``page_index``, ``rows_per_page`` (O6)."""
        return self._read(request, lambda store, p: store.saleorder_list(p))

    @get("/api/consignmentlist/batch_get", sync_to_thread=False)
    def consignment_list(self, request: AnyRequest) -> Response[bytes]:
        """``date_begin``, ``date_end``, ``page_index``, ``rows_per_page`` (O3)."""
        return self._read(request, lambda store, p: store.consignment_list(p))

    @get("/api/consignment/get", sync_to_thread=False)
    def consignment(self, request: AnyRequest) -> Response[bytes]:
        """One 发货单 with its lines, ``?id=`` its code (O3)."""
        return self._read(request, lambda store, p: store.consignment(p.get("id", "")))

    @staticmethod
    def _write(request: AnyRequest, work: Callable[[U8OpenApiStore, bytes], dict[str, Any]]) -> Response[bytes]:
        call, p, store = current_call(request), _params(request), _store(request)

        def run() -> dict[str, Any]:
            store.check_token(p)
            if call.fault == "reject":
                raise OpenApiError(E_BUSINESS, REJECT_MSG)
            return work(store, call.body)

        return _answer(call, run)

    @staticmethod
    def _read(request: AnyRequest, work: Callable[[U8OpenApiStore, dict[str, str]], dict[str, Any]]) -> Response[bytes]:
        p, store = _params(request), _store(request)

        def run() -> dict[str, Any]:
            store.check_token(p)
            return work(store, p)

        return _answer(current_call(request), run)


def _sync(params: dict[str, str]) -> bool:
    return params.get("sync", "").strip().lower() not in ("", "0", "false")


U8_OPENAPI = SimulatedSystem(name=SYSTEM, controller=U8OpenApiController, new_store=U8OpenApiStore)
