"""Yonyou U8 EAI adapter: sale orders over ``POST /U8EAI/import.asp`` (erp-protocols.md §1, §4, §5):
``proc="add"`` to submit, ``edit`` to update, ``delete`` to cancel, ``query`` to look an order up
and to read the 发货单 (``roottag="consignment"``) recorded against our orders.

Errors are sorted by what the caller does next (``gateway.errors``): nothing was sent →
``RetryableError``; the request may have been written → ``UnknownOutcomeError`` (look it up
before any retry, §1.7: U8 dedupes on nothing but ``code``); U8 said no → ``PermanentError``
with U8's own ``dsc``. Request and reply bodies hold buyer names, phones and addresses, so they
are never logged and never copied into an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from adapters.erp import written_earlier
from adapters.http_exchange import Partner, exchange
from adapters.u8.eai_consignment import ShipmentTags, batches, build_consignment_query, shipments_of
from adapters.u8.eai_errors import DICTIONARY_HINT, DUPLICATE, WIDTH_HINT, edit_hint, hint, unknown
from adapters.u8.eai_xml import (
    QueryRefusedError,
    ReplyItem,
    ReplyShapeError,
    build_delete,
    build_query,
    build_request,
    parse_query_reply,
    parse_reply,
)
from adapters.u8.fields import FieldWidthError
from gateway.errors import ConfigError, PermanentError
from gateway.ports import ErpDocument, ErpReceipt, ErpShipment

if TYPE_CHECKING:
    from adapters.erp import AdapterContext

# Nothing reached U8: the connection was never made or no pooled connection became free.
_U8_EAI = Partner(
    name="U8 EAI",
    name_zh="U8 EAI",
    unreachable_hint="Check that the U8 EAI server is up and the URL setting is right",
    # 3xx/4xx come from IIS before the EAI page runs: nothing was processed.
    address_hint="Check the U8 EAI URL setting (path case varies: /U8EAI/import.asp)",
    unknown=unknown,
)
#: ``options`` of a ``u8_eai`` target besides the ``shipment_*`` tags (eai_consignment.ShipmentTags).
_OPTIONS = ("content_type",)


class U8EaiAdapter:
    """The ``ErpAdapter`` for one U8 account reached through EAI XML over HTTP.

    Args:
        url: The full ``import.asp`` URL.
        sender: The external-system code registered in U8 EAI (外部系统注册).
        client: A shared client; when None the adapter owns one and ``aclose`` closes it.
        timeout: Seconds to wait for writing the request and reading the reply.
        connect_timeout: Seconds to wait for a connection (and for a free pooled one).
        content_type: Sent as is; U8 reads the raw body whatever it says (§1.1).
        shipment_tags: Where this site's 发货单 keep the order code, carrier and waybill.
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
        shipment_tags: ShipmentTags | None = None,
    ) -> None:
        self._url = url
        self._sender = sender
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        self._headers = {"Content-Type": content_type}
        self._tags = shipment_tags or ShipmentTags()

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        """Add the sale order ``doc.code`` to U8.

        Returns:
            The receipt; when U8 reports the code as already there (an earlier attempt wrote
            it), the receipt of the existing order.

        Raises:
            RetryableError: nothing was sent, or U8 answered 502/503 or another refusal before
                processing.
            UnknownOutcomeError: the order may have been written (HTTP 500, an empty or unknown
                reply, the unverified ``<u8apireturn>`` variant, a dropped connection).
            PermanentError: U8 rejected the order, or the document cannot be rendered (a
                missing tag, a value wider than its column); nothing is sent then.
        """
        item = await self._write(doc, self._render(doc, "add"))
        if item.succeed == "0":
            return ErpReceipt(document_no=item.key or doc.code, erp_key=item.u8key or None)
        if DUPLICATE in item.dsc:
            return await self._existing(doc, item.dsc)
        raise PermanentError(
            f"U8 rejected sale order {doc.code}",
            f"U8 拒绝了销售订单 {doc.code}",
            partner_message=item.dsc,
            hint=hint(item.dsc),
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
        found = await self._find(doc.code)
        if found is None:
            return None
        if not _same_order(found, doc):
            raise PermanentError(
                f"U8 already holds a different sale order under code {doc.code}",
                f"U8 中编码 {doc.code} 已被另一张销售订单占用",
                hint="Check the document code sequence and the order in U8 before replaying",
                document_code=doc.code,
            )
        erp_key = found.get("id") or None
        return ErpReceipt(document_no=doc.code, erp_key=erp_key, message="found in U8 by query")

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """Edit the sale order ``doc.code`` in U8 to carry ``doc`` (``proc="edit"``, same code).

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: the edit may have been applied.
            PermanentError: U8 refused (audited, a 发货单 against it, closed, gone), with a hint.
        """
        item = await self._write(doc, self._render(doc, "edit"))
        if item.succeed == "0":
            return ErpReceipt(document_no=item.key or doc.code, erp_key=item.u8key or None, message="edited in U8")
        raise PermanentError(
            f"U8 refused to edit sale order {doc.code}",
            f"U8 拒绝修改销售订单 {doc.code}",
            partner_message=item.dsc,
            hint=edit_hint(item.dsc),
            document_code=doc.code,
            succeed=item.succeed,
        )

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """Delete the sale order ``doc.code`` from U8 (``proc="delete"``).

        An order U8 no longer holds counts as cancelled: when U8 refuses the delete, a query
        decides whether it refused because the order is gone (success) or because it must stay.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: the delete may have happened, or the query after a refusal
                gave no trustworthy answer.
            PermanentError: U8 refused and still holds the order (audited, shipped…), with a hint.
        """
        item = await self._write(doc, build_delete(doc.code, sender=self._sender, docid=doc.order_id))
        if item.succeed == "0":
            return ErpReceipt(document_no=doc.code, erp_key=item.u8key or None, message="deleted in U8")
        if await self._find(doc.code) is None:
            return ErpReceipt(document_no=doc.code, message="not in U8 any more")
        raise PermanentError(
            f"U8 refused to delete sale order {doc.code}",
            f"U8 拒绝删除销售订单 {doc.code}",
            partner_message=item.dsc,
            hint=edit_hint(item.dsc),
            document_code=doc.code,
            succeed=item.succeed,
        )

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """发货单 dated on or after ``since`` (its local day) that ship any of ``codes`` (§4):
        ``proc="query"`` on ``roottag="consignment"``, ``ShipmentTags.batch`` codes a query.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: U8 refused or garbled a query; nothing is concluded from it.
        """
        found: list[ErpShipment] = []
        for batch in batches(codes, self._tags.batch):
            label = batch[0]
            data = await self._post(build_consignment_query(batch, sender=self._sender, tags=self._tags), label)
            try:
                records = parse_query_reply(data, roottag="consignment", strict=True)
            except QueryRefusedError as exc:
                raise unknown(label, "U8 refused the 发货单 query", partner_message=exc.dsc) from exc
            except ReplyShapeError as exc:
                raise unknown(label, f"U8 sent an unrecognised 发货单 query reply ({exc})") from exc
            found.extend(shipments_of(records, batch, since=since, tags=self._tags))
        return found

    async def aclose(self) -> None:
        """Close the HTTP client when the adapter created it."""
        if self._owns_client:
            await self._client.aclose()

    # -- helpers ---------------------------------------------------------------------------------

    def _render(self, doc: ErpDocument, proc: str) -> bytes:
        try:
            return build_request(doc, sender=self._sender, proc=proc)
        except FieldWidthError as exc:
            raise PermanentError(
                f"Sale order {doc.code}: {exc.field} does not fit U8's {exc.column} "
                f"({exc.length} bytes, at most {exc.width}); nothing was sent",
                f"销售订单 {doc.code}：{exc.field} 超出 U8 字段 {exc.column} 的长度（{exc.length} 字节，最多 "
                f"{exc.width}），未发送",
                hint=WIDTH_HINT,
                document_code=doc.code,
                field=exc.field,
                column=exc.column,
            ) from exc
        except ValueError as exc:
            raise PermanentError(
                f"Sale order {doc.code} cannot be rendered as U8 EAI XML: {exc}",
                f"销售订单 {doc.code} 无法生成 U8 EAI 报文：{exc}",
                hint="Fix the U8 outbound dictionary or the value tables, then replay the dead letter",
                document_code=doc.code,
            ) from exc

    async def _write(self, doc: ErpDocument, body: bytes) -> ReplyItem:
        """Send one write and return its single reply item; ``succeed="0"`` with neither key nor
        dsc means U8 wrote nothing (§1.5 pitfall) and is refused here."""
        data = await self._post(body, doc.code)
        try:
            items = parse_reply(data, strict=True)
        except ReplyShapeError as exc:
            raise unknown(doc.code, f"U8 sent an unrecognised reply ({exc})") from exc
        if len(items) != 1:
            raise unknown(doc.code, f"U8 answered {len(items)} items for one sale order")
        item = items[0]
        if item.succeed == "0" and not item.key and not item.dsc:
            raise PermanentError(
                f"U8 wrote nothing for sale order {doc.code}",
                f"U8 未写入销售订单 {doc.code}",
                hint=DICTIONARY_HINT,
                document_code=doc.code,
            )
        return item

    async def _find(self, code: str) -> dict[str, Any] | None:
        """The order U8 holds under ``code`` (header tags and ``lines``), None when it holds none."""
        data = await self._post(build_query(code, sender=self._sender), code)
        try:
            orders = parse_query_reply(data, strict=True)
        except QueryRefusedError as exc:
            raise unknown(code, "U8 refused the look-up query", partner_message=exc.dsc) from exc
        except ReplyShapeError as exc:
            raise unknown(code, f"U8 sent an unrecognised query reply ({exc})") from exc
        # A query filter U8 ignores would return every order, so match the code ourselves.
        found = [order for order in orders if str(order.get("code", "")).strip().casefold() == code.casefold()]
        return found[0] if found else None

    async def _existing(self, doc: ErpDocument, dsc: str) -> ErpReceipt:
        return written_earlier(
            await self.lookup(doc),
            doc,
            erp="U8",
            erp_zh="U8",
            answer=dsc,
            hint="Look for the code in U8 (it may be another document type), then replay",
        )

    async def _post(self, body: bytes, code: str) -> bytes:
        response = await exchange(
            self._client,
            _U8_EAI,
            "POST",
            self._url,
            code=code,
            what="the U8 EAI call",
            content=body,
            headers=self._headers,
            timeout=self._timeout,
        )
        return response.content


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
    """The adapter of a ``transport = "u8_eai"`` target (``adapters.erp``).

    ``[targets.X.options]``: ``content_type``, and ``shipment_order_field``, ``shipment_order``,
    ``shipment_order_row``, ``shipment_item``, ``shipment_quantity``, ``shipment_carrier``,
    ``shipment_waybill``, ``shipment_batch`` (``eai_consignment.ShipmentTags``). Unknown keys are
    refused, so a misspelt tag setting fails at start-up rather than reading nothing.
    """
    target = ctx.target
    if not target.sender:
        raise ConfigError(
            f"target {ctx.name}: U8 EAI needs `sender`",
            f"目标 {ctx.name}：U8 EAI 需要 sender",
            hint="Set sender to the external-system code registered in U8 EAI (外部系统注册)",
        )
    options = dict(target.options)
    known = {*_OPTIONS, *(f"shipment_{name}" for name in ShipmentTags.__dataclass_fields__)}
    unknown_keys = sorted(set(options) - known)
    if unknown_keys:
        raise ConfigError(
            f"target {ctx.name}: unknown U8 EAI options {', '.join(unknown_keys)}",
            f"目标 {ctx.name}：未知的 U8 EAI 选项 {', '.join(unknown_keys)}",
            hint=f"Use only {', '.join(sorted(known))}",
        )
    try:
        tags = ShipmentTags.from_options(options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"target {ctx.name}: bad U8 EAI shipment option: {exc}",
            f"目标 {ctx.name}：U8 EAI 发货单选项有误：{exc}",
            hint="Fix the shipment_* settings in the target's [options]",
        ) from exc
    extra = {"content_type": str(options["content_type"])} if "content_type" in options else {}
    return U8EaiAdapter(
        url=target.url,
        sender=target.sender,
        client=ctx.http,
        timeout=target.timeout_s,
        connect_timeout=target.connect_timeout_s,
        shipment_tags=tags,
        **extra,
    )

