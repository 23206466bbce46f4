"""Yonyou U8 EAI adapter: sale orders over ``POST /U8EAI/import.asp`` (erp-protocols.md §1, §5).

Errors are sorted by what the caller does next (``gateway.errors``): nothing was sent →
``RetryableError``; the request may have been written → ``UnknownOutcomeError`` (look it up
before any retry, §1.7: U8 dedupes on nothing but ``code``); U8 said no → ``PermanentError``
with U8's own ``dsc``. Request and reply bodies hold buyer names, phones and addresses, so they
are never logged and never copied into an error.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

from adapters.u8.eai_xml import (
    QueryRefusedError,
    ReplyShapeError,
    build_query,
    build_request,
    parse_query_reply,
    parse_reply,
)
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from gateway.ports import ErpDocument, ErpReceipt

if TYPE_CHECKING:
    from adapters.erp import AdapterContext

# Nothing reached U8: the connection was never made or no pooled connection became free.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_DUPLICATE = "已经存在"  # "…编码已经存在，不可重复！" (§1.5, §1.6)
# "存货编码[030199]不存在", "客户 010009 不存在", "部门编码(9999)在部门档案中不存在"…: the sale-order
# texts are not public (§1.6), so the pattern is loose: subject, a code, then 不存在.
_MISSING = re.compile(
    r"(存货|客户|部门|销售类型|业务员|人员|职员)[^0-9A-Za-z\[【(（]*?[\[【(（\"“']?\s*"
    r"([0-9A-Za-z][0-9A-Za-z._\-]*)\s*[\]】)）\"”']?[^，,。;；]*?不存在"
)
_HINTS = {
    "存货": "Add inventory code {0} to the SKU value table or create it in U8, then replay the dead letter",
    "客户": "Map the shop to an existing U8 customer in the shop value table or create customer {0} "
    "in U8, then replay the dead letter",
    "部门": "Set an existing U8 department code in the outbound dictionary or create department {0} "
    "in U8, then replay the dead letter",
    "销售类型": "Set an existing U8 sales type code in the outbound dictionary or create sales type {0} "
    "in U8, then replay the dead letter",
    "人员": "Set an existing U8 person code in the outbound dictionary or create person {0} in U8, "
    "then replay the dead letter",
}
_GENERIC_HINT = "Read U8's message, correct the document data or the U8 archives, then replay the dead letter"
_DICTIONARY_HINT = (
    "U8 accepted the request but wrote nothing: check the outbound dictionary uses lower-case "
    "U8 EAI tag names (§1.3), then replay the dead letter"
)


class U8EaiAdapter:
    """The ``ErpAdapter`` for one U8 account reached through EAI XML over HTTP.

    Args:
        url: The full ``import.asp`` URL.
        sender: The external-system code registered in U8 EAI (外部系统注册).
        client: A shared client; when None the adapter owns one and ``aclose`` closes it.
        timeout: Seconds to wait for writing the request and reading the reply.
        connect_timeout: Seconds to wait for a connection (and for a free pooled one).
        content_type: Sent as is; U8 reads the raw body whatever it says (§1.1).
    """

    def __init__(
        self,
        *,
        url: str,
        sender: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        content_type: str = "application/xml; charset=utf-8",
    ) -> None:
        self._url = url
        self._sender = sender
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        self._headers = {"Content-Type": content_type}

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        """Add the sale order ``doc.code`` to U8.

        Returns:
            The receipt; when U8 reports the code as already there (an earlier attempt wrote
            it), the receipt of the existing order.

        Raises:
            RetryableError: nothing was sent, or U8 answered 502/503 or another refusal before
                processing.
            UnknownOutcomeError: the order may have been written.
            PermanentError: U8 rejected the order, or the document cannot be rendered.
        """
        try:
            body = build_request(doc, sender=self._sender)
        except ValueError as exc:
            raise PermanentError(
                f"Sale order {doc.code} cannot be rendered as U8 EAI XML: {exc}",
                f"销售订单 {doc.code} 无法生成 U8 EAI 报文：{exc}",
                hint="Fix the U8 outbound dictionary or the value tables, then replay the dead letter",
                document_code=doc.code,
            ) from exc
        data = await self._post(body, doc.code)
        try:
            items = parse_reply(data)
        except ReplyShapeError as exc:
            raise _unknown(doc.code, f"U8 sent an unrecognised reply ({exc})") from exc
        if len(items) != 1:
            raise _unknown(doc.code, f"U8 answered {len(items)} items for one sale order")
        item = items[0]
        if item.succeed == "0":
            if not item.key and not item.dsc:
                raise PermanentError(
                    f"U8 wrote nothing for sale order {doc.code}",
                    f"U8 未写入销售订单 {doc.code}",
                    hint=_DICTIONARY_HINT,
                    document_code=doc.code,
                )
            return ErpReceipt(document_no=item.key or doc.code, erp_key=item.u8key or None)
        if _DUPLICATE in item.dsc:
            return await self._existing(doc, item.dsc)
        raise PermanentError(
            f"U8 rejected sale order {doc.code}",
            f"U8 拒绝了销售订单 {doc.code}",
            partner_message=item.dsc,
            hint=_hint(item.dsc),
            document_code=doc.code,
            succeed=item.succeed,
        )

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        """Query U8 for a sale order with ``doc.code``; None when there is none.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: no trustworthy answer (transport failure, odd reply, refusal).
            PermanentError: the code exists in U8 but holds a different order.
        """
        data = await self._post(build_query(doc.code, sender=self._sender), doc.code)
        try:
            orders = parse_query_reply(data)
        except QueryRefusedError as exc:
            raise _unknown(doc.code, "U8 refused the look-up query", partner_message=exc.dsc) from exc
        except ReplyShapeError as exc:
            raise _unknown(doc.code, f"U8 sent an unrecognised query reply ({exc})") from exc
        # A query filter U8 ignores would return every order, so match the code ourselves.
        found = [order for order in orders if str(order.get("code", "")).strip() == doc.code]
        if not found:
            return None
        if not _same_order(found[0], doc):
            raise PermanentError(
                f"U8 already holds a different sale order under code {doc.code}",
                f"U8 中编码 {doc.code} 已被另一张销售订单占用",
                hint="Check the document code sequence and the order in U8 before replaying",
                document_code=doc.code,
            )
        erp_key = found[0].get("id") or None
        return ErpReceipt(document_no=doc.code, erp_key=erp_key, message="found in U8 by query")

    async def aclose(self) -> None:
        """Close the HTTP client when the adapter created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _existing(self, doc: ErpDocument, dsc: str) -> ErpReceipt:
        receipt = await self.lookup(doc)
        if receipt is None:
            raise PermanentError(
                f"U8 reports sale order code {doc.code} as taken but the query cannot find it",
                f"U8 报告销售订单编码 {doc.code} 已存在，但查询不到",
                partner_message=dsc,
                hint="Look for the code in U8 (it may be another document type), then replay",
                document_code=doc.code,
            )
        return ErpReceipt(
            document_no=receipt.document_no,
            erp_key=receipt.erp_key,
            message="already in U8: written by an earlier attempt",
        )

    async def _post(self, body: bytes, code: str) -> bytes:
        try:
            response = await self._client.post(
                self._url, content=body, headers=self._headers, timeout=self._timeout
            )
        except _NOT_SENT as exc:
            raise RetryableError(
                f"U8 EAI unreachable ({type(exc).__name__}); nothing was sent",
                "U8 EAI 无法连接，未发送",
                hint="Check that the U8 EAI server is up and the URL setting is right",
                document_code=code,
            ) from exc
        except httpx.RequestError as exc:
            # Read/write timeouts and dropped connections: U8 may have committed the order.
            raise _unknown(code, f"U8 EAI call failed after sending ({type(exc).__name__})") from exc
        status = response.status_code
        if status in (502, 503):
            raise RetryableError(
                f"U8 EAI answered HTTP {status}", f"U8 EAI 返回 HTTP {status}", document_code=code
            )
        if status >= 500:
            # U8 answers 500 for malformed data and when it crashes mid-write (§1.5): unknown.
            raise _unknown(code, f"U8 EAI answered HTTP {status}", http_status=status)
        if status != 200:
            # 3xx/4xx come from IIS before the EAI page runs: nothing was processed.
            raise RetryableError(
                f"U8 EAI answered HTTP {status}",
                f"U8 EAI 返回 HTTP {status}",
                hint="Check the U8 EAI URL setting (path case varies: /U8EAI/import.asp)",
                document_code=code,
                http_status=status,
            )
        return response.content


def _unknown(code: str, reason: str, **details: Any) -> UnknownOutcomeError:
    return UnknownOutcomeError(
        f"Outcome of U8 sale order {code} unknown: {reason}",
        f"U8 销售订单 {code} 结果未知，需先查询",
        document_code=code,
        **details,
    )


def _hint(dsc: str) -> str:
    """An operator hint for U8's rejection text (sale-order texts are inferred, §1.6)."""
    match = _MISSING.search(dsc)
    if match:
        subject = "人员" if match.group(1) in ("业务员", "职员") else match.group(1)
        return _HINTS[subject].format(match.group(2))
    if "数据库没有提供的字段" in dsc:
        return "A tag is not a U8 EAI name: fix the outbound dictionary, then replay the dead letter"
    if "发送方" in dsc:
        return "Register the sender code in U8 EAI (外部系统注册) or fix the sender setting, then replay"
    if "月结" in dsc or "结账" in dsc:
        return "The period of the order date is closed in U8: reopen it or change the date rule, then replay"
    return _GENERIC_HINT


def _same_order(found: dict[str, Any], doc: ErpDocument) -> bool:
    """Does the order U8 holds under our code look like ours? Only fields both sides carry count."""
    ours = str(doc.header.get("custcode") or "").strip()
    theirs = str(found.get("custcode") or "").strip()
    if ours and theirs and ours != theirs:
        return False
    lines = found.get("lines") or []
    if lines:
        their_codes = sorted(str(line.get("inventorycode", "")).strip() for line in lines)
        our_codes = sorted(str(entry.get("inventorycode", "")).strip() for entry in doc.entries)
        return their_codes == our_codes
    return True


def from_target(ctx: AdapterContext) -> U8EaiAdapter:
    """The adapter of a ``transport = "u8_eai"`` target (``adapters.erp``)."""
    target = ctx.target
    if not target.sender:
        raise ConfigError(
            f"target {ctx.name}: U8 EAI needs `sender`",
            f"目标 {ctx.name}：U8 EAI 需要 sender",
            hint="Set sender to the external-system code registered in U8 EAI (外部系统注册)",
        )
    return U8EaiAdapter(
        url=target.url,
        sender=target.sender,
        client=ctx.http,
        timeout=target.timeout_s,
        connect_timeout=target.connect_timeout_s,
    )
