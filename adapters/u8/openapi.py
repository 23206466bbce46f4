"""Yonyou U8+ OpenAPI adapter: sale orders through the api.yonyouup.com relay (erp-protocols.md §2,
§4, §5 "U8 OpenAPI").

Idempotency is the relay's own (O1): every ``saleorder/add`` carries ``biz_id`` = the document code
and a ``tradeid`` that is stored in the gateway database (``erp_handles``) *before* the first add
is sent and reused on every retry of the same document, across restarts — so a repeated add gets
the original result and never writes a second order. Errors are sorted by what the caller does
next (``gateway.errors``): nothing sent → ``RetryableError``; maybe written → ``UnknownOutcomeError``;
U8 said no (HTTP 200, ``errcode != "0"``) → ``PermanentError`` with U8's ``errmsg``. Bodies hold
buyer data and query strings the token, so neither is logged nor copied into an error.

Edit and delete are not in the reference: ``update`` and ``cancel`` call the **(inferred)** paths
``api/saleorder/edit`` and ``api/saleorder/delete``, which a target can change in its options
(``edit_path``, ``delete_path``) once the relay's real ones are known.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapters.erp import written_earlier
from adapters.u8.eai_errors import hint as u8_hint  # U8's own texts: the relay writes through EAI (§2)
from adapters.u8.openapi_json import build_saleorder, code_only
from adapters.u8.openapi_reads import MAX_PAGES, OrderReader
from adapters.u8.openapi_session import TOKEN_ERRCODES, OpenApiSession, unknown
from gateway.errors import ConfigError, PermanentError
from gateway.ports import ErpDocument, ErpReceipt, ErpShipment, UnitOfWorkFactory

if TYPE_CHECKING:
    from adapters.erp import AdapterContext

TRADEID = "tradeid"  # the erp_handles name of a document's trade id
_DUPLICATE = "已经存在"  # "销售订单号[…]已经存在，不可重复！": the code was taken without our tradeid
_GONE = "不存在"


class U8OpenApiAdapter:
    """The ``ErpAdapter`` for one U8 account set reached through U8+ OpenAPI.

    Args:
        target: The target's name: the key of its stored trade ids.
        session: Token, trade ids and raw calls (``openapi_session.py``).
        uow_factory: The gateway database, where trade ids are kept.
        sync: Ask for the synchronous answer (``sync=1``); a reply with a ``url`` is polled anyway.
        poll_first_s: The first wait before polling an asynchronous result (O3/O4 wait ~3 s).
        poll_max_s: The longest wait between two polls (the waits double up to it).
        edit_path: (inferred) The path of the edit API.
        delete_path: (inferred) The path of the delete API.
        rows_per_page: Rows asked per page of a list API.
        max_pages: Pages of one list read at most (a look-up reads the order's day).
    """

    def __init__(
        self,
        *,
        target: str,
        session: OpenApiSession,
        uow_factory: UnitOfWorkFactory,
        sync: bool = True,
        poll_first_s: float = 1.0,
        poll_max_s: float = 5.0,
        edit_path: str = "/api/saleorder/edit",
        delete_path: str = "/api/saleorder/delete",
        rows_per_page: int = 200,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._target = target
        self.session = session  # public: its token and raw calls serve operators' tools and tests
        self._uow = uow_factory
        self._sync = sync
        self._poll_first_s = poll_first_s
        self._poll_max_s = poll_max_s
        self._edit_path = edit_path
        self._delete_path = delete_path
        self._reads = OrderReader(session, rows_per_page=rows_per_page, max_pages=max_pages)

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        """Add the sale order ``doc.code`` through ``saleorder/add`` with its stored trade id.

        Returns:
            The receipt; for a repeated trade id or biz_id the relay's original result (O1), and
            for a code U8 already holds from elsewhere the existing order if it is ours.

        Raises:
            RetryableError: nothing was sent (no connection, no token, no trade id).
            UnknownOutcomeError: the order may have been written (timeout, dropped reply, HTTP
                500, an unknown reply, a result still pending at the deadline).
            PermanentError: U8 rejected the order, or the document cannot be rendered.
        """
        body = _render(doc)
        deadline = time.monotonic() + self.session.timeout
        trade_id = await self._trade_id(doc.code)
        params = {"tradeid": trade_id, "biz_id": doc.code}
        if self._sync:
            params["sync"] = "1"
        reply = await self.session.call("POST", "/api/saleorder/add", code=doc.code, params=params, body=body)
        if reply["errcode"] == "0" and not reply.get("id") and reply.get("url"):
            reply = await self._poll(str(reply["url"]), doc.code, deadline)
        if reply["errcode"] == "0":
            if not reply.get("id"):
                raise unknown(doc.code, "U8 OpenAPI answered success without an order id")
            return ErpReceipt(document_no=str(reply["id"]), message=f"tradeid {trade_id}")
        if _DUPLICATE in reply["errmsg"]:
            return await self._existing(doc, reply["errmsg"])
        raise _rejected(doc.code, reply, "rejected sale order", "拒绝了销售订单")

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        """Is ``doc.code`` in U8? Read through ``saleorderlist/batch_get`` on the order's date.

        No stored trade id means this gateway never sent an add for the code (the id is stored
        before the first one), so the answer is None without a call.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: no trustworthy answer.
            PermanentError: the code exists in U8 but holds another customer's order.
        """
        async with self._uow(write=False) as uow:
            stored = await uow.erp_handles.get(self._target, doc.code, TRADEID)
        if stored is None:
            return None
        return await self._find(doc)

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """(inferred API) Replace the order ``doc.code`` with ``doc`` through ``edit_path``.

        Raises:
            PermanentError: U8 refused (not there, shipped, audited) or the document cannot be
                rendered.
        """
        reply = await self.session.call("POST", self._edit_path, code=doc.code, body=_render(doc))
        if reply["errcode"] != "0":
            raise _rejected(doc.code, reply, "refused to edit sale order", "拒绝修改销售订单")
        return ErpReceipt(document_no=str(reply.get("id") or doc.code), message="edited in U8")

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """(inferred API) Delete the order ``doc.code`` through ``delete_path``; an order that is
        not there any more is a success.

        Raises:
            PermanentError: U8 refused (shipped, audited).
        """
        reply = await self.session.call("POST", self._delete_path, code=doc.code, body=code_only(doc.code))
        if reply["errcode"] == "0":
            return ErpReceipt(document_no=doc.code, message="deleted in U8")
        if _GONE in reply["errmsg"] and doc.code in reply["errmsg"]:
            return ErpReceipt(document_no=doc.code, message="not in U8 (already deleted)")
        raise _rejected(doc.code, reply, "refused to delete sale order", "拒绝删除销售订单")

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """发货单 (consignments) since ``since`` that ship any of ``codes`` (§4: lines carry
        ``cordercode``), read through ``consignmentlist/batch_get`` and ``consignment/get``."""
        return await self._reads.shipments(codes, since=since)

    async def aclose(self) -> None:
        """Nothing of its own to close: the HTTP client is the process's."""

    # -- helpers ---------------------------------------------------------------------------------

    async def _trade_id(self, code: str) -> str:
        """The document's trade id: the stored one, else a new one stored before it is used."""
        async with self._uow(write=False) as uow:
            stored = await uow.erp_handles.get(self._target, code, TRADEID)
        if stored is not None:
            return stored
        fresh = await self.session.tradeid(code)
        async with self._uow() as uow:
            # Another worker may have stored one meanwhile: then both use the one stored first.
            stored = await uow.erp_handles.put_if_absent(self._target, code, TRADEID, fresh, now=datetime.now(UTC))
            await uow.commit()
        return stored

    async def _poll(self, url: str, code: str, deadline: float) -> dict[str, Any]:
        """Poll an asynchronous result until it is final or the call's time is up (O3–O5)."""
        if _origin(url) != _origin(self.session.base_url):
            raise unknown(code, "U8 OpenAPI gave a result URL on another host; it is not followed")
        wait = self._poll_first_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise unknown(code, "the asynchronous result was still pending at the deadline", pending=True)
            await asyncio.sleep(min(wait, left))
            left = deadline - time.monotonic()
            if left <= 0:
                raise unknown(code, "the asynchronous result was still pending at the deadline", pending=True)
            reply = await self.session.send("GET", url, code=code, within_s=left)
            if self.session.refuses_token(reply):
                # The add was accepted; a refusal to show its result says nothing about the order.
                raise unknown(code, "U8 OpenAPI refused to show the asynchronous result", errcode=reply["errcode"])
            if reply["errcode"] != "0" or reply.get("id"):
                return reply
            if reply.get("status") not in ("processing", "pending"):
                raise unknown(code, "U8 OpenAPI sent a result without an order id or a pending status")
            wait = min(wait * 2, self._poll_max_s)

    async def _find(self, doc: ErpDocument) -> ErpReceipt | None:
        row = await self._reads.find_order(doc.code, _day(doc.header.get("date")))
        if row is None:
            return None
        ours, theirs = str(doc.header.get("custcode") or ""), str(row.get("custcode") or "")
        if ours and theirs and ours != theirs:
            raise PermanentError(
                f"U8 already holds a different sale order under code {doc.code}",
                f"U8 中编码 {doc.code} 已被另一张销售订单占用",
                hint="Check the document code sequence and the order in U8 before replaying",
                document_code=doc.code,
            )
        return ErpReceipt(document_no=doc.code, message="found in U8 by saleorderlist")

    async def _existing(self, doc: ErpDocument, errmsg: str) -> ErpReceipt:
        found = await self._find(doc)
        return written_earlier(
            None if found is None else ErpReceipt(document_no=doc.code),
            doc,
            erp="U8",
            erp_zh="U8",
            answer=errmsg,
            hint="Look for the code in U8 (it may be another document type or date), then replay",
        )


def _render(doc: ErpDocument) -> bytes:
    try:
        return build_saleorder(doc)
    except ValueError as exc:
        raise PermanentError(
            f"Sale order {doc.code} cannot be rendered as U8 OpenAPI JSON: {exc}",
            f"销售订单 {doc.code} 无法生成 U8 OpenAPI 报文：{exc}",
            hint="Fix the U8 outbound dictionary or the value tables, then replay the dead letter",
            document_code=doc.code,
        ) from exc


def _rejected(code: str, reply: dict[str, Any], what: str, what_zh: str) -> PermanentError:
    return PermanentError(
        f"U8 OpenAPI {what} {code}",
        f"U8 OpenAPI {what_zh} {code}",
        partner_message=reply["errmsg"] or None,
        hint=u8_hint(reply["errmsg"]),
        document_code=code,
        errcode=reply["errcode"],
    )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _day(value: Any) -> date | None:
    """The calendar day of a header ``date`` (``YYYY-MM-DD[ HH:MM:SS]``), None when unreadable."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value or "")[:10])
    except ValueError:
        return None


def from_target(ctx: AdapterContext) -> U8OpenApiAdapter:
    """The adapter of a ``transport = "u8_openapi"`` target (``adapters.erp``).

    Options (``[targets.X.options]``): ``sync`` (default true), ``poll_first_s``, ``poll_max_s``,
    ``edit_path``, ``delete_path`` (inferred APIs), ``rows_per_page``, ``max_pages``, ``token_errcodes``.
    """
    creds = ctx.require("app_key", "app_secret", "from_account", "to_account")
    if ctx.uow_factory is None:
        raise ConfigError(
            f"target {ctx.name}: U8 OpenAPI needs the gateway database for its trade ids",
            f"目标 {ctx.name}：U8 OpenAPI 需要网关数据库保存 tradeid",
        )
    options = ctx.target.options
    session = OpenApiSession(
        base_url=ctx.target.url,
        client=ctx.http,
        credentials=creds,
        timeout=ctx.target.timeout_s,
        connect_timeout=ctx.target.connect_timeout_s,
        token_errcodes=[str(c) for c in options.get("token_errcodes", TOKEN_ERRCODES)],
    )
    return U8OpenApiAdapter(
        target=ctx.name,
        session=session,
        uow_factory=ctx.uow_factory,
        sync=bool(options.get("sync", True)),
        poll_first_s=float(options.get("poll_first_s", 1.0)),
        poll_max_s=float(options.get("poll_max_s", 5.0)),
        edit_path=str(options.get("edit_path", "/api/saleorder/edit")),
        delete_path=str(options.get("delete_path", "/api/saleorder/delete")),
        rows_per_page=int(options.get("rows_per_page", 200)),
        max_pages=int(options.get("max_pages", MAX_PAGES)),
    )
