"""Kingdee K3 WISE WebAPI adapter: sales orders (SO) over ``/K3API/{Object}/{Operation}?token=``
(reference/erp-protocols.md §3.1–3.4, §4, §5 "K3 WISE WebAPI").

Save is not idempotent in K3 (§3.4): a second Save of the same order writes a second bill unless
the bill carries its own ``FBillNo``. So every Save sends the document code as ``FBillNo``; a
Save of a bill an earlier attempt wrote is then refused as a duplicate, which the adapter turns
into success after finding the bill by ``GetList`` (and the core looks it up the same way before
any retry whose outcome is unknown). Tokens come from ``TokenBroker`` (``adapters.k3.tokens``):
one K3 session for all workers; a call refused for its token is sent once more with the token
the broker gives after the refusal.

Errors (``gateway.errors``): nothing sent, a refused token twice, 502/503 → ``RetryableError``;
HTTP 500, a read timeout, a dropped reply, a reply that is not the ``{"StatusCode", "Message",
"Data"}`` envelope → ``UnknownOutcomeError``; ``StatusCode ≠ 200`` → ``PermanentError`` with K3's
``Message``. Request and reply bodies hold buyer data and are never logged nor copied into errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from adapters.erp import written_earlier
from adapters.http_exchange import Partner, exchange
from adapters.k3.k3json import (
    Envelope,
    ReplyShapeError,
    build_bill,
    field,
    list_rows,
    number_of,
    parse_envelope,
    sql_text,
)
from adapters.k3.shipments import CHINA, LINK_FIELDS, ShipmentFields, group_shipments
from adapters.k3.tokens import TokenBroker
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from gateway.ports import ErpDocument, ErpReceipt, ErpShipment

if TYPE_CHECKING:
    from adapters.erp import AdapterContext

_DUPLICATE = re.compile(r"已存在|重复|already exists|duplicate", re.IGNORECASE)
_MISSING = re.compile(r"不存在|not exist", re.IGNORECASE)
_CODES_PER_QUERY = 50
_PAGE_SIZE = 500  # below K3's 2000 per page (K1)
_GENERIC_HINT = "Read K3's message, correct the document data or K3's base data, then replay the dead letter"


class K3WebApiAdapter:
    """The ``ErpAdapter`` for one K3 WISE account set reached through its WebAPI.

    Args:
        root: The server root in front of ``/K3API``.
        broker: The shared session (``TokenBroker``) of this root and account set.
        client: A shared client; when None the adapter owns one and ``aclose`` closes it.
        timeout: Seconds to wait for writing the request and reading the reply.
        connect_timeout: Seconds to wait for a connection (and a free pooled one).
        shipment_objects: The bills read back as shipments: ``Sales_Delivery`` (销售出库, what left
            the warehouse) and/or ``Delivery_Notice`` (发货通知).
        waybill_field, carrier_field: Header fields of those bills holding the waybill number and
            the carrier (custom fields such as ``FHeadSelfB0436``: site-specific), if any.
    """

    def __init__(
        self,
        *,
        root: str,
        broker: TokenBroker,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        shipment_objects: Sequence[str] = ("Sales_Delivery",),
        waybill_field: str | None = None,
        carrier_field: str | None = None,
    ) -> None:
        self._api = f"{root.rstrip('/')}/K3API"
        self._broker = broker
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        unknown = [o for o in shipment_objects if o not in LINK_FIELDS]
        if unknown:
            raise ValueError(f"unknown shipment objects {unknown}; use {sorted(LINK_FIELDS)}")
        self._shipment_objects = tuple(shipment_objects)
        self._header_fields = ShipmentFields(waybill=waybill_field, carrier=carrier_field)

    # -- the ErpAdapter port --------------------------------------------------------------------

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        """Save the SO ``doc.code`` (``SO/Save`` with ``FBillNo = doc.code``).

        Returns:
            The receipt; when K3 says the bill number exists and the bill there is this order
            (an earlier attempt wrote it), the receipt of that bill.
        """
        reply = await self._call("SO", "Save", self._bill(doc), doc.code)
        if reply.status == 200:
            return _receipt(reply.data, doc.code)
        if _DUPLICATE.search(reply.message):
            return await self._existing(doc, reply.message)
        raise _rejected(doc.code, "rejected", "拒绝了", reply)

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        """The SO whose ``FBillNo`` is ``doc.code`` (``SO/GetList``); None when K3 has none.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: no trustworthy answer.
            PermanentError: the bill number holds a different order.
        """
        query = {
            "Top": "100",
            "PageSize": "100",
            "PageIndex": "1",
            "Fields": "FBillNo,FInterID,FCustID,FItemID",
            "Filter": f"[FBillNo] = {sql_text(doc.code)}",
        }
        reply = await self._call("SO", "GetList", {"Data": query}, doc.code)
        if reply.status != 200:
            raise _unknown(doc.code, "K3 refused the look-up", partner_message=reply.message)
        try:
            total, rows = list_rows(reply.data)
        except ReplyShapeError as exc:
            raise _unknown(doc.code, f"K3 sent an unrecognised list ({exc})") from exc
        # A filter K3 ignored would list every bill: match the number ourselves.
        found = [r for r in rows if str(field(r, "FBillNo") or "").strip().casefold() == doc.code.casefold()]
        if not found:
            return None
        if not _same_order(found, doc, all_lines=total <= len(rows)):
            raise PermanentError(
                f"K3 already holds a different SO under bill number {doc.code}",
                f"K3 中单据编号 {doc.code} 已被另一张销售订单占用",
                hint="Check the document code prefix and sequence against K3's bills before replaying",
                document_code=doc.code,
            )
        inter_id = field(found[0], "FInterID")
        return ErpReceipt(
            document_no=doc.code, erp_key=None if inter_id is None else str(inter_id), message="found in K3 by GetList"
        )

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """``SO/Update`` of the bill ``doc.code`` (top-level ``FBillNo``, §3.3); K3 refuses an
        audited bill."""
        body = {"FBillNo": doc.code, **self._bill(doc)}
        reply = await self._call("SO", "Update", body, doc.code)
        if reply.status != 200:
            raise _rejected(doc.code, "refused to update", "拒绝修改", reply)
        return _receipt(reply.data, doc.code)

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """``SO/Delete`` of the bill ``doc.code``. K3 WISE deletes only a bill that is not audited
        and has no downstream bills; the body ``{"Data": {"FBillNo"}}`` is inferred from GetDetail's
        (§3.4). A bill that is not there is a success once GetList confirms it."""
        reply = await self._call("SO", "Delete", {"Data": {"FBillNo": doc.code}}, doc.code)
        if reply.status == 200:
            return ErpReceipt(document_no=doc.code, message="deleted in K3")
        if _MISSING.search(reply.message) and await self.lookup(doc) is None:
            return ErpReceipt(document_no=doc.code, message="not in K3")
        raise PermanentError(
            f"K3 refused to delete SO {doc.code}",
            f"K3 拒绝删除销售订单 {doc.code}",
            partner_message=reply.message,
            hint="An audited SO or one with delivery bills cannot be deleted: un-audit it or close it in K3",
            document_code=doc.code,
        )

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """Shipment bills (``GetList`` of each shipment object) linked to the SOs ``codes``, dated
        at or after ``since``."""
        wanted = {c.casefold(): c for c in codes}
        out: list[ErpShipment] = []
        since_text = since.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        for obj in self._shipment_objects:
            link = LINK_FIELDS[obj]
            for start in range(0, len(codes), _CODES_PER_QUERY):
                chunk = codes[start : start + _CODES_PER_QUERY]
                filter_text = f"[{link}] in ({','.join(sql_text(c) for c in chunk)}) and [Fdate] >= '{since_text}'"
                rows = await self._list_all(obj, filter_text)
                out.extend(group_shipments(obj, link, rows, wanted, fields=self._header_fields))
        return out

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- helpers --------------------------------------------------------------------------------

    def _bill(self, doc: ErpDocument) -> dict[str, Any]:
        try:
            return build_bill(doc)
        except ValueError as exc:
            raise PermanentError(
                f"SO {doc.code} cannot be rendered for K3: {exc}",
                f"销售订单 {doc.code} 无法生成 K3 报文：{exc}",
                hint="Fix the K3 outbound dictionary (mappings/erp/k3_so.toml) or the value tables, then replay",
                document_code=doc.code,
            ) from exc

    async def _existing(self, doc: ErpDocument, message: str) -> ErpReceipt:
        return written_earlier(
            await self.lookup(doc),
            doc,
            erp="K3",
            erp_zh="K3",
            answer=message,
            hint="Look for the number in K3 (another bill type may hold it), then replay",
        )

    async def _list_all(self, obj: str, filter_text: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            query = {"PageSize": str(_PAGE_SIZE), "PageIndex": str(page), "Filter": filter_text}
            reply = await self._call(obj, "GetList", {"Data": query}, obj)
            if reply.status != 200:
                raise PermanentError(
                    f"K3 refused the {obj} list query",
                    f"K3 拒绝了 {obj} 列表查询",
                    partner_message=reply.message,
                    hint="Check shipment_objects and that the site's list has FOrderBillNo/FSourceBillNo and Fdate",
                )
            try:
                total, batch = list_rows(reply.data)
            except ReplyShapeError as exc:
                raise RetryableError(
                    f"K3 sent an unrecognised {obj} list ({exc})", f"K3 {obj} 列表应答无法识别"
                ) from exc
            rows.extend(batch)
            if not batch or len(rows) >= total:
                return rows
            page += 1

    async def _call(self, obj: str, op: str, body: dict[str, Any], code: str) -> Envelope:
        """One API call with the shared token; a refused token is replaced once."""
        content = msgspec.json.encode(body)
        token = await self._broker.token()
        reply = await self._send(obj, op, token, content, code)
        if _token_refused(reply):
            token = await self._broker.rejected(token)
            reply = await self._send(obj, op, token, content, code)
            if _token_refused(reply):
                raise RetryableError(
                    "K3 refused a fresh token; nothing was written",
                    "K3 拒绝了新获取的 Token，未写入",
                    partner_message=reply.message,
                    hint="Another client may be logging in to the same account set with this authority code",
                    document_code=code,
                )
        return reply

    async def _send(self, obj: str, op: str, token: str, content: bytes, code: str) -> Envelope:
        url = f"{self._api}/{obj}/{op}"
        response = await exchange(
            self._client,
            _K3_WEBAPI,
            "POST",
            url,
            code=code,
            what=f"{obj}/{op}",
            params={"token": token},
            content=content,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=self._timeout,
        )
        try:
            return parse_envelope(response.content)
        except ReplyShapeError as exc:
            raise _unknown(code, f"K3 sent an unrecognised reply to {obj}/{op} ({exc})") from exc


def _token_refused(reply: Envelope) -> bool:
    """K3's refusal of a missing, stale or expired token (texts are not public, §3.4): 401, or a
    refusal that names the token."""
    return reply.status != 200 and (reply.status == 401 or "token" in reply.message.casefold())


def _receipt(data: Any, code: str) -> ErpReceipt:
    data = data if isinstance(data, dict) else {}
    bill_no = field(data, "BillNo")
    inter_id = field(data, "FInterID")
    return ErpReceipt(document_no=str(bill_no or code), erp_key=None if inter_id is None else str(inter_id))


def _rejected(code: str, verb: str, verb_zh: str, reply: Envelope) -> PermanentError:
    return PermanentError(
        f"K3 {verb} SO {code}",
        f"K3 {verb_zh}销售订单 {code}",
        partner_message=reply.message,
        hint=_hint(reply.message),
        document_code=code,
        status_code_k3=reply.status,
    )


def _hint(message: str) -> str:
    if "FItemID" in message or "物料" in message:
        return "Add the material's FNumber to the SKU value table or create it in K3, then replay the dead letter"
    if "FCustID" in message or "购货单位" in message or "客户" in message:
        return "Map the shop to an existing K3 customer FNumber in the value table or create it in K3, then replay"
    if "FDeptID" in message or "FEmpID" in message:
        return "Set an existing department / employee FNumber in the target's params, then replay the dead letter"
    if "结账" in message:
        return "The period of the order date is closed in K3: reopen it or change the date rule, then replay"
    return _GENERIC_HINT


def _unknown(code: str, reason: str, **details: Any) -> UnknownOutcomeError:
    return UnknownOutcomeError(
        f"Outcome of K3 SO {code} unknown: {reason}",
        f"K3 销售订单 {code} 结果未知，需先查询",
        document_code=code,
        **details,
    )


def _same_order(rows: list[dict[str, Any]], doc: ErpDocument, *, all_lines: bool) -> bool:
    """Does the SO K3 holds under our number look like ours? The customer, and the materials when
    the list gave every line (a bill longer than one page is judged by its customer)."""
    ours = number_of(field(doc.header, "FCustID"))
    theirs = number_of(field(rows[0], "FCustID"))
    if ours and theirs and ours != theirs:
        return False
    if not all_lines:
        return True
    their_items = sorted(n for r in rows if (n := number_of(field(r, "FItemID"))))
    our_items = sorted(number_of(field(e, "FItemID")) for e in doc.entries)
    return not their_items or their_items == our_items


def from_target(ctx: AdapterContext) -> K3WebApiAdapter:
    """The adapter of a ``transport = "k3_webapi"`` target (``adapters.erp``).

    ``url`` is the root in front of ``/K3API``; ``[auth] authority_code`` the K3API authority code
    (from the environment); ``account_set`` the 账套 it is bound to (with the root, the key of the
    session all workers share). ``[options]``: ``token_margin_s`` (replace a token this long
    before it expires, default 60), ``token_validity_s`` (instead of K3's ``Validity``),
    ``shipment_objects`` (default ``["Sales_Delivery"]``), ``waybill_field`` / ``carrier_field``
    (header fields of the shipment bills).
    """
    target = ctx.target
    code = ctx.require("authority_code")["authority_code"]
    options = target.options
    timeout = httpx.Timeout(target.timeout_s, connect=target.connect_timeout_s, pool=target.connect_timeout_s)
    objects = options.get("shipment_objects", ("Sales_Delivery",))
    if isinstance(objects, str) or not all(o in LINK_FIELDS for o in objects):
        raise ConfigError(
            f"target {ctx.name}: options.shipment_objects must list some of {sorted(LINK_FIELDS)}",
            f"目标 {ctx.name}：options.shipment_objects 只能取 {sorted(LINK_FIELDS)}",
            hint='e.g. shipment_objects = ["Sales_Delivery"]',
        )
    broker = TokenBroker(
        root=target.url,
        authority_code=code,
        account_set=target.account_set,
        client=ctx.http,
        timeout=timeout,
        redis=ctx.redis,
        margin_s=float(options.get("token_margin_s", 60.0)),
        validity_s=float(options["token_validity_s"]) if "token_validity_s" in options else None,
    )
    return K3WebApiAdapter(
        root=target.url,
        broker=broker,
        client=ctx.http,
        timeout=target.timeout_s,
        connect_timeout=target.connect_timeout_s,
        shipment_objects=tuple(objects),
        waybill_field=options.get("waybill_field"),
        carrier_field=options.get("carrier_field"),
    )


_K3_WEBAPI = Partner(
    name="K3 WebAPI",
    name_zh="K3 WebAPI",
    unreachable_hint="Check that the K3 WebAPI server is up and the target URL is its root",
    address_hint="Check the target URL (the root in front of /K3API)",
    unknown=_unknown,
)
