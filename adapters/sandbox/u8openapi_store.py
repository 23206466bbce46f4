"""What the simulated U8+ OpenAPI relay keeps: reference/erp-protocols.md §2 and §5 "U8 OpenAPI".

The real relay (api.yonyouup.com) hands each call to the 用友开放平台客户端 on the U8 server, which
writes through an EAI data source (§2, topology). So the 账套 behind this simulator is a
``U8Store`` of its own (``u8saleorder.py``): a JSON ``saleorder`` becomes the EAI ``<saleorder>``
element and meets the very rules of the EAI simulator (required tags, seeded archives, quantity
> 0, amounts to the fen, unique ``code``). What the relay adds is kept here: app credentials,
tokens with an expiry, trade ids, the original result of every ``tradeid`` and ``biz_id`` (O1),
asynchronous requests, and 发货单 (consignments) for shipment read-back.

Error codes and texts are not public beyond ``{"errcode":"2001","errmsg":"fail"}`` (O1); the codes
below are **(inferred)**, the texts follow U8's own wording.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

from adapters.sandbox.u8saleorder import ENTRY_TAGS, HEADER_TAGS, SaleOrder, SaleOrderRejected, U8Store

# (inferred) error codes of the simulated relay
E_APP = "20001"  # unknown app_key / wrong app_secret
E_ACCOUNT = "20002"  # from_account or to_account not authorised
E_TOKEN_INVALID = "30001"  # noqa: S105 - an error code: a token the relay never issued (or revoked)
E_TOKEN_EXPIRED = "30002"  # noqa: S105 - an error code
E_TRADEID = "2001"  # the only error shape O1 shows: {"errcode":"2001","errmsg":"fail"}
E_PARAM = "40002"  # a required parameter or the body is missing or malformed
E_BUSINESS = "40001"  # U8 refused the document; errmsg is U8's text

DEFAULT_TOKEN_MS = 7_200_000  # expiresIn is in milliseconds: O3's TokenManager compares it to ms
#: The ``reject`` fault: a business refusal no retry can fix (a closed period, as for EAI §1.6).
REJECT_MSG = "单据日期所在会计期间已经结账，不能保存单据！"


class OpenApiError(Exception):
    """An answer ``{"errcode": code, "errmsg": msg}`` with HTTP 200 (§5)."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg

    def reply(self) -> dict[str, Any]:
        return {"errcode": self.code, "errmsg": self.msg}


@dataclass
class Token:
    id: str
    app_key: str
    from_account: str
    expires_at: float  # time.monotonic()


@dataclass
class AsyncRequest:
    """An ``add`` answered with a ``url`` (§2): pending for ``pending_polls`` polls, then final."""

    result: dict[str, Any]
    pending_polls: int


@dataclass
class Consignment:
    """A 发货单 against our sale orders (§4: lines carry ``cordercode`` and ``iorderrowno``)."""

    code: str
    date: str
    custcode: str
    header: dict[str, str]
    lines: list[dict[str, str]] = field(default_factory=list)


class U8OpenApiStore:
    """The relay's state and the 账套 behind it, built from the ``[u8openapi]`` seed table."""

    def __init__(self, seed: Mapping[str, Any]) -> None:
        self.apps: dict[str, str] = {str(k): str(v) for k, v in seed.get("apps", {}).items()}
        self.from_accounts = frozenset(str(a) for a in seed.get("from_accounts", ()))
        self.to_accounts = frozenset(str(a) for a in seed.get("to_accounts", ()))
        self.token_lifetime_ms: int = int(seed.get("token_expires_in_ms", DEFAULT_TOKEN_MS))
        self.pending_polls: int = int(seed.get("pending_polls", 1))
        # Test knob, not a relay behaviour: the next N ``add`` replies are cut-off JSON, sent after
        # the order was written (what a broken proxy in front of the relay does).
        self.garbled_replies: int = 0
        self.u8 = U8Store(seed)  # the 账套: archives and sale orders, EAI rules
        self.tokens: dict[str, Token] = {}
        self.trade_ids: set[str] = set()
        self.results: dict[tuple[str, str], dict[str, Any]] = {}  # ("tradeid"|"biz_id", value) → result
        self.requests: dict[str, AsyncRequest] = {}
        self.consignments: dict[str, Consignment] = {}
        self._last_consignment = 0

    # -- system/token, system/tradeid -----------------------------------------------------------

    def issue_token(self, from_account: str, app_key: str, app_secret: str) -> dict[str, Any]:
        if not app_key or self.apps.get(app_key) != app_secret:
            raise OpenApiError(E_APP, "app_key或app_secret错误")
        if from_account not in self.from_accounts:
            raise OpenApiError(E_ACCOUNT, f"from_account[{from_account}]未注册")
        token = Token(secrets.token_hex(16), app_key, from_account, time.monotonic() + self.token_lifetime_ms / 1000)
        self.tokens[token.id] = token
        return {
            "errcode": "0",
            "errmsg": "成功",
            "token": {"id": token.id, "appKey": app_key, "expiresIn": self.token_lifetime_ms},
        }

    def check_token(self, params: Mapping[str, str], *, to_account: bool = True) -> None:
        """Every call but ``system/token`` names the caller, the app and a live token (§2)."""
        token = self.tokens.get(params.get("token", ""))
        if token is None or token.app_key != params.get("app_key") or token.from_account != params.get("from_account"):
            raise OpenApiError(E_TOKEN_INVALID, "token无效")
        if time.monotonic() >= token.expires_at:
            raise OpenApiError(E_TOKEN_EXPIRED, "token已过期")
        if to_account and params.get("to_account", "") not in self.to_accounts:
            raise OpenApiError(E_ACCOUNT, f"to_account[{params.get('to_account', '')}]未授权")

    def revoke_tokens(self) -> None:
        """Forget every token, as the relay does when an app's secret is reset (tests use it)."""
        self.tokens.clear()

    def issue_trade_id(self) -> dict[str, Any]:
        trade_id = secrets.token_hex(16)  # 32 hex digits, as in O1's example
        self.trade_ids.add(trade_id)
        return {"errcode": "0", "errmsg": "成功", "trade": {"id": trade_id}}

    # -- saleorder/add ----------------------------------------------------------------------------

    def add_saleorder(self, params: Mapping[str, str], body: bytes, *, reject: bool) -> dict[str, Any]:
        """The final result of an ``add``: the original one for a repeated tradeid or biz_id (O1).

        Only successes are remembered (inferred): a rejected document wrote nothing, and the same
        trade id must be usable once the data is fixed.
        """
        trade_id, biz_id = params.get("tradeid", ""), params.get("biz_id", "")
        if trade_id not in self.trade_ids:
            raise OpenApiError(E_TRADEID, "tradeid无效，请先调用system/tradeid获取")
        for key in (("tradeid", trade_id), ("biz_id", biz_id)):
            if key[1] and key in self.results:
                return self.results[key]
        if reject:
            raise OpenApiError(E_BUSINESS, REJECT_MSG)
        order = self._write(self.u8.add, body)
        result = {"errcode": "0", "errmsg": "成功", "id": order.code, "tradeid": trade_id}
        self.results[("tradeid", trade_id)] = result
        if biz_id:
            self.results[("biz_id", biz_id)] = result
        return result

    def edit_saleorder(self, body: bytes) -> dict[str, Any]:
        """(inferred) ``saleorder/edit``: replace an unshipped order's header and lines."""
        code = str(_document(body, "saleorder").get("code") or "")
        self._refuse_shipped(code)
        order = self._write(self.u8.edit, body)
        return {"errcode": "0", "errmsg": "成功", "id": order.code}

    def delete_saleorder(self, body: bytes) -> dict[str, Any]:
        """(inferred) ``saleorder/delete``: remove an unshipped order."""
        code = str(_document(body, "saleorder").get("code") or "")
        self._refuse_shipped(code)
        el = etree.Element("saleorder", code=code)
        try:
            order = self.u8.delete(el)
        except SaleOrderRejected as exc:
            raise OpenApiError(E_BUSINESS, exc.dsc) from exc
        return {"errcode": "0", "errmsg": "成功", "id": order.code}

    def start_request(self, result: dict[str, Any]) -> str:
        request_id = secrets.token_hex(16)
        self.requests[request_id] = AsyncRequest(result, self.pending_polls)
        return request_id

    def poll(self, request_id: str) -> dict[str, Any]:
        """(inferred field set, §6) pending: ``status="processing"``; final: the add's result."""
        request = self.requests.get(request_id)
        if request is None:
            raise OpenApiError(E_PARAM, f"requestid[{request_id}]不存在")
        if request.pending_polls > 0:
            request.pending_polls -= 1
            return {"errcode": "0", "errmsg": "处理中", "requestid": request_id, "status": "processing"}
        return {**request.result, "requestid": request_id, "status": "done"}

    # -- consignments (发货单) ----------------------------------------------------------------------

    def add_consignment(self, body: bytes) -> dict[str, Any]:
        """(inferred) ``consignment/add``: a shipment against stored sale orders."""
        doc = _document(body, "consignment")
        entries = doc.get("entry")
        if not isinstance(entries, list) or not entries:
            raise OpenApiError(E_BUSINESS, "表体不能为空，至少需要一行存货")
        lines = []
        for row, entry in enumerate(entries, start=1):
            line = {k: _text(v) for k, v in entry.items()} if isinstance(entry, dict) else {}
            order = self.u8.orders.get(line.get("cordercode", "").casefold())
            if order is None:
                raise OpenApiError(E_BUSINESS, f"第{row}行销售订单号[{line.get('cordercode', '')}]不存在")
            if line.get("inventorycode") not in {item.get("inventorycode") for item in order.lines}:
                raise OpenApiError(E_BUSINESS, f"第{row}行存货编码[{line.get('inventorycode', '')}]不在订单中")
            if _decimal(line.get("quantity", "")) <= 0:
                raise OpenApiError(E_BUSINESS, f"第{row}行数量[{line.get('quantity', '')}]必须大于0")
            lines.append(line)
        header = {k: _text(v) for k, v in doc.items() if k != "entry"}
        self._last_consignment += 1
        code = header.get("code") or f"{self._last_consignment:010d}"
        if code in self.consignments:
            raise OpenApiError(E_BUSINESS, f"发货单号[{code}]已经存在，不可重复！")
        date = header.get("date") or datetime.now(UTC).strftime("%Y-%m-%d")
        custcode = header.get("custcode") or self.u8.orders[lines[0]["cordercode"].casefold()].header["custcode"]
        self.consignments[code] = Consignment(code, date, custcode, {**header, "code": code}, lines)
        return {"errcode": "0", "errmsg": "成功", "id": code}

    # -- reads ------------------------------------------------------------------------------------

    def saleorder_list(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``saleorderlist/batch_get`` (O6): by date range and state, paged; summary rows."""
        state = params.get("state", "")
        if state and state not in ("Opening", "Approved", "Changing"):
            raise OpenApiError(E_PARAM, f"state[{state}]无效")
        rows = [
            {
                "code": o.code,
                "date": o.header.get("date", "")[:10],
                "custcode": o.header.get("custcode"),
                "state": "Opening",
                "id": o.u8key,
            }
            for o in self.u8.orders.values()
            if _in_range(o.header.get("date", ""), params) and state in ("", "Opening")
        ]
        return {"errcode": "0", "errmsg": "成功", **_page(rows, params, "saleorderlist")}

    def consignment_list(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``consignmentlist/batch_get`` (O3): by date range, paged; summary rows."""
        rows = [
            {"code": c.code, "date": c.date[:10], "custcode": c.custcode}
            for c in self.consignments.values()
            if _in_range(c.date, params)
        ]
        return {"errcode": "0", "errmsg": "成功", **_page(rows, params, "consignmentlist")}

    def consignment(self, code: str) -> dict[str, Any]:
        """``consignment/get?id=`` (O3): one 发货单 with its lines."""
        found = self.consignments.get(code)
        if found is None:
            raise OpenApiError(E_BUSINESS, f"发货单号[{code}]不存在")
        return {"errcode": "0", "errmsg": "成功", "consignment": {**found.header, "entry": found.lines}}

    def documents(self) -> list[dict[str, Any]]:
        """For ``GET /_sandbox/u8openapi/documents``: the sale orders as U8 holds them."""
        return self.u8.documents()

    # -- helpers ----------------------------------------------------------------------------------

    def _write(self, operation: Any, body: bytes) -> SaleOrder:
        try:
            return operation(_as_eai(_document(body, "saleorder")))
        except SaleOrderRejected as exc:
            raise OpenApiError(E_BUSINESS, exc.dsc) from exc

    def _refuse_shipped(self, code: str) -> None:
        if any(
            line.get("cordercode", "").casefold() == code.casefold()
            for c in self.consignments.values()
            for line in c.lines
        ):
            raise OpenApiError(E_BUSINESS, f"销售订单[{code}]已发货，不能修改或删除")


def _document(body: bytes, root: str) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OpenApiError(E_PARAM, "请求体不是有效的JSON") from exc
    doc = data.get(root) if isinstance(data, dict) else None
    if not isinstance(doc, dict):
        raise OpenApiError(E_PARAM, f"请求体缺少{root}对象")
    return doc


def _as_eai(doc: dict[str, Any]) -> etree._Element:
    """The JSON ``saleorder`` as the EAI element the 开放平台客户端 hands to U8 (keys = EAI tags, §2)."""
    el = etree.Element("saleorder")
    header = etree.SubElement(el, "header")
    for key, value in doc.items():
        if key == "entry":
            continue
        _child(header, key, value, HEADER_TAGS)
    body = etree.SubElement(el, "body")
    entries = doc.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            raise OpenApiError(E_PARAM, "entry的每一行必须是对象")
        line = etree.SubElement(body, "entry")
        for key, value in entry.items():
            _child(line, key, value, ENTRY_TAGS)
    return el


def _child(parent: etree._Element, key: str, value: Any, allowed: frozenset[str]) -> None:
    if key.lower() not in allowed:  # also keeps names lxml would refuse out of the element
        raise OpenApiError(E_BUSINESS, f"数据库没有提供的字段({key})")
    etree.SubElement(parent, key.lower()).text = _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        raise OpenApiError(E_PARAM, "字段值必须是字符串或数字")
    return str(value)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() else Decimal(0)


def _in_range(date: str, params: Mapping[str, str]) -> bool:
    day = date[:10]
    begin, end = params.get("date_begin", ""), params.get("date_end", "")
    return (not begin or day >= begin) and (not end or day <= end)


def _page(rows: list[dict[str, Any]], params: Mapping[str, str], key: str) -> dict[str, Any]:
    try:
        index = max(int(params.get("page_index", "1")), 1)
        size = min(max(int(params.get("rows_per_page", "20")), 1), 8000)
    except ValueError as exc:
        raise OpenApiError(E_PARAM, "page_index/rows_per_page必须是整数") from exc
    start = (index - 1) * size
    return {
        "page_index": index,
        "rows_per_page": size,
        "row_count": len(rows),
        "page_count": (len(rows) + size - 1) // size,
        key: rows[start : start + size],
    }
