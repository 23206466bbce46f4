"""Kingdee K3 WISE through a partner's SOAP order service (zeep): reference/erp-protocols.md §3.5.

There is no standard K3 WISE WSDL; sites run WCF wrappers such as K6's ``ERPService``
(``addSEorder(FormSEOrder)``, ``cancelOrder(orderNo)``, answering ``ServiceResult`` with
``Status`` 0 = ok). The bundled ``ERPService.wsdl`` is modelled on it and adds operations a
site's wrapper must offer for the gateway's promises: ``getSEorder(billNO)``, the look-up before
any retry whose outcome is unknown, ``updateSEorder(FormSEOrder)`` for edits, and
``getSEOutstock(orderNo)`` for reading shipments (销售出库) back. Site WSDLs differ, so
``target.options`` names the WSDL file, the binding and each operation. A service without a
look-up is served too: ``lookup`` then adds the order again under the same ``BillNO`` and takes
the wrapper's "already exists" answer as proof the first attempt landed.

The WSDL is parsed once, from a local file, when the adapter is built; calls go to
``target.url`` (``create_service``-style binding of the WSDL's binding to that address), over the
gateway's shared httpx client. zeep parses replies with DTDs, entities and external references
forbidden; every reply is also screened with ``adapters.xmlsafe`` before zeep sees it.

Errors (``gateway.errors``):
    * nothing sent (connect error), HTTP 502/503 or another refusal before processing →
      ``RetryableError``;
    * HTTP 5xx without a SOAP fault, a read timeout, a dropped reply, a reply that is not XML,
      carries a DTD or entities, or has an unknown shape → ``UnknownOutcomeError``;
    * a SOAP fault whose faultcode is ``Client`` (WCF could not dispatch or deserialize the
      message: nothing was processed, and the same message fails again) → ``PermanentError``;
      any other faultcode (``Server``: the wrapper failed while handling it, perhaps after K3
      wrote the bill) → ``UnknownOutcomeError``;
    * ``ServiceResult.Status ≠ 0`` → ``PermanentError`` with the wrapper's ``Message``.
Request and reply bodies hold buyer data: they are never logged nor copied into errors (zeep's
own transport logs bodies at DEBUG; the transport here does not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from zeep import AsyncClient
from zeep import exceptions as zeep_errors
from zeep.proxy import AsyncServiceProxy

from adapters.erp import written_earlier
from adapters.http_exchange import NOT_SENT, Partner, not_sent
from adapters.k3.soap_body import (
    ReplyShapeError,
    build_order,
    check_members,
    member,
    read_result,
    read_shipments,
    same_order,
)
from adapters.k3.soap_errors import (
    from_bad_reply,
    from_fault,
    partner_text,
    rejected,
    unknown,
    unrenderable,
)
from adapters.k3.soap_transport import BadReply, SharedClientTransport, zeep_settings
from gateway.errors import ConfigError, PermanentError
from gateway.ports import ErpDocument, ErpReceipt, ErpShipment

if TYPE_CHECKING:
    from adapters.erp import AdapterContext

BUNDLED_WSDL = Path(str(resources.files("adapters.k3").joinpath("ERPService.wsdl")))
DEFAULT_BINDING = "{http://tempuri.org/}BasicHttpBinding_IERPService"
#: Our role → the operation of the bundled WSDL; ``target.options.operations`` overrides each,
#: and "" says the site's service lacks it (all but ``add`` and ``cancel`` may be missing).
DEFAULT_OPERATIONS = {
    "add": "addSEorder",
    "lookup": "getSEorder",
    "update": "updateSEorder",
    "cancel": "cancelOrder",
    "shipments": "getSEOutstock",
}
_DUPLICATE = re.compile(r"已存在|重复|already exists|duplicate", re.IGNORECASE)
_MISSING = re.compile(r"不存在|not exist|not found", re.IGNORECASE)


class K3SoapAdapter:
    """The ``ErpAdapter`` for one K3 WISE account set behind a partner's SOAP order service.

    Args:
        url: The service endpoint (the WSDL's ``soap:address`` is ignored).
        client: The shared httpx client; when None the adapter owns one and ``aclose`` closes it.
        wsdl: Path of the site's WSDL file; the bundled ``ERPService.wsdl`` by default.
        binding: The binding's QName text, ``{namespace}name``.
        operations: Role → operation name overrides (``add``, ``lookup``, ``update``, ``cancel``,
            ``shipments``); "" for a role the site's service lacks.
        timeout: Seconds to wait for writing the request and reading the reply.
        connect_timeout: Seconds to wait for a connection (and a free pooled one).
    """

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient | None = None,
        wsdl: str | Path = BUNDLED_WSDL,
        binding: str = DEFAULT_BINDING,
        operations: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        self._owns_client = client is None
        self._http = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        transport = SharedClientTransport(self._http, self._timeout)
        self._zeep = AsyncClient(str(wsdl), transport=transport, settings=zeep_settings())
        try:
            bound = self._zeep.wsdl.bindings[binding]
        except KeyError:
            raise ValueError(f"the WSDL has no binding {binding}; it has {sorted(self._zeep.wsdl.bindings)}") from None
        # AsyncClient.create_service returns a synchronous proxy (zeep 4.x), so build the async one.
        self._binding = bound
        self._service = AsyncServiceProxy(self._zeep, bound, address=url)
        names = {**DEFAULT_OPERATIONS, **(operations or {})}
        available = set(bound.all())
        for role, name in names.items():
            if role not in DEFAULT_OPERATIONS:
                raise ValueError(f"unknown operation role {role!r}; use {sorted(DEFAULT_OPERATIONS)}")
            if not name and role in ("add", "cancel"):
                raise ValueError(f"the {role} operation is required")
            if name and name not in available:
                raise ValueError(f"the WSDL's binding has no operation {name!r} ({role}); it has {sorted(available)}")
        self._ops = names

    # -- the ErpAdapter port --------------------------------------------------------------------

    async def submit(self, doc: ErpDocument) -> ErpReceipt:
        """``addSEorder`` with ``BillNO = doc.code``; a duplicate answer is resolved by the look-up."""
        result = await self._call("add", doc.code, self._order(doc))
        if result["Status"] == 0:
            return ErpReceipt(document_no=result["BillNO"] or doc.code, message=result["Message"] or None)
        if _DUPLICATE.search(result["Message"]):
            return await self._existing(doc, result["Message"])
        raise rejected(doc.code, "rejected", "拒绝了", result)

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        """The sales order ``doc.code`` (``getSEorder``); None when the service has none.

        Without a look-up operation the order is added again under the same ``BillNO``: "already
        exists" means the earlier attempt wrote it, success means it is written now.

        Raises:
            RetryableError: nothing was sent.
            UnknownOutcomeError: no trustworthy answer.
            PermanentError: the bill number holds a different order; or (without a look-up) the
                service rejects the order.
        """
        if not self._ops["lookup"]:
            result = await self._call("add", doc.code, self._order(doc))
            if result["Status"] == 0:
                return ErpReceipt(document_no=result["BillNO"] or doc.code, message="written by the look-up's re-add")
            if _DUPLICATE.search(result["Message"]):
                return ErpReceipt(document_no=doc.code, message="already in K3: the re-add was refused as a duplicate")
            raise rejected(doc.code, "rejected", "拒绝了", result)
        result = await self._call("lookup", doc.code, doc.code, shape="query")
        if result["Status"] != 0:
            raise unknown(doc.code, "the service refused the look-up", partner_message=result["Message"])
        found = result["Order"]
        # zeep reads a nil complex element (``<a:Order i:nil="true"/>``) as an object of empty
        # members, so "no order" is an order without a bill number.
        bill_no = str(member(found, "BillNO") or "").strip()
        if not bill_no:
            return None
        if bill_no.casefold() != doc.code.casefold() or not same_order(found, doc):
            raise PermanentError(
                f"K3 already holds a different sales order under bill number {doc.code}",
                f"K3 中单据编号 {doc.code} 已被另一张销售订单占用",
                hint="Check the document code prefix and sequence against K3's bills before replaying",
                document_code=doc.code,
            )
        return ErpReceipt(document_no=doc.code, message="found in K3 by the look-up")

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """``updateSEorder`` of the bill ``doc.code``; the wrapper refuses an audited or closed bill."""
        if not self._ops["update"]:
            raise PermanentError(
                f"The K3 SOAP service offers no update; sales order {doc.code} was not changed",
                f"K3 SOAP 服务不提供修改操作，销售订单 {doc.code} 未修改",
                hint="Change the order in K3 by hand, or ask the site to add an update operation to its service",
                document_code=doc.code,
            )
        result = await self._call("update", doc.code, self._order(doc))
        if result["Status"] != 0:
            raise rejected(doc.code, "refused to update", "拒绝修改", result)
        return ErpReceipt(document_no=result["BillNO"] or doc.code, message=result["Message"] or None)

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """``cancelOrder(orderNo)``; a bill the service does not have is a success once the
        look-up (when the service offers one) confirms it."""
        result = await self._call("cancel", doc.code, doc.code)
        if result["Status"] == 0:
            return ErpReceipt(document_no=doc.code, message=result["Message"] or "cancelled in K3")
        if _MISSING.search(result["Message"]) and (not self._ops["lookup"] or await self.lookup(doc) is None):
            return ErpReceipt(document_no=doc.code, message="not in K3")
        raise PermanentError(
            f"The K3 SOAP service refused to cancel sales order {doc.code}",
            f"K3 SOAP 服务拒绝关闭销售订单 {doc.code}",
            partner_message=partner_text(result["Message"]),
            hint="An audited order or one with delivery bills cannot be cancelled: close it in K3 by hand",
            document_code=doc.code,
        )

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """Sales outstock bills (``getSEOutstock``, one call per order) shipping the orders
        ``codes``, dated at or after ``since``.

        Raises:
            PermanentError: the site's service has no shipment query (K6's has none), or it
                refuses the query.
            RetryableError, UnknownOutcomeError: as for any call; nothing is written by a read.
        """
        if not self._ops["shipments"]:
            raise PermanentError(
                "The K3 SOAP service offers no shipment read-back",
                "K3 SOAP 服务不提供发货回读",
                hint="Have the WMS post shipped events to POST /v1/events, or read shipments through the "
                "K3 WebAPI transport (k3_webapi) of the same account set",
            )
        out: list[ErpShipment] = []
        for code in codes:
            result = await self._call("shipments", code, code, shape="outstock")
            if result["Status"] != 0:
                raise PermanentError(
                    f"The K3 SOAP service refused the shipment query for {code}",
                    f"K3 SOAP 服务拒绝查询 {code} 的出库单",
                    partner_message=partner_text(result["Message"]),
                    hint="Check the site's getSEOutstock operation (options.operations.shipments)",
                    document_code=code,
                )
            try:
                out.extend(read_shipments(code, result["OutStocks"], since))
            except ReplyShapeError as exc:
                raise unknown(code, f"the shipment query answered an unknown shape ({exc})") from exc
        return out

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    # -- helpers --------------------------------------------------------------------------------

    def _order(self, doc: ErpDocument) -> dict[str, Any]:
        try:
            return build_order(doc)
        except ValueError as exc:
            raise unrenderable(doc.code, str(exc)) from exc

    async def _existing(self, doc: ErpDocument, message: str) -> ErpReceipt:
        if not self._ops["lookup"]:
            return ErpReceipt(document_no=doc.code, message="already in K3: written by an earlier attempt")
        return written_earlier(
            await self.lookup(doc),
            doc,
            erp="K3",
            erp_zh="K3",
            answer=partner_text(message),
            hint="Look for the number in K3 (another bill type may hold it), then replay",
        )

    async def _call(self, role: str, code: str, argument: Any, *, shape: str = "result") -> dict[str, Any]:
        """Call the operation of ``role`` with one argument; its result as a plain dict."""
        name = self._ops[role]
        try:
            # Checked and rendered first, so a document that does not fit is known to be unsent.
            [(parameter, element)] = self._binding.get(name).input.body.type.elements
            check_members(element.type, argument, parameter)
            self._zeep.create_message(self._service, name, argument)
        except (zeep_errors.ValidationError, TypeError, ValueError) as exc:
            raise unrenderable(code, type(exc).__name__ + ": " + str(exc)[:200]) from exc
        try:
            reply = await getattr(self._service, name)(argument)
        except NOT_SENT as exc:
            raise not_sent(_K3_SOAP, exc, code) from exc
        except httpx.RequestError as exc:
            raise unknown(code, f"{name} failed after sending ({type(exc).__name__})") from exc
        except BadReply as exc:
            raise from_bad_reply(code, name, exc) from exc
        except zeep_errors.Fault as exc:
            raise from_fault(code, name, exc) from exc
        except zeep_errors.Error as exc:
            # DTDForbidden, EntitiesForbidden, XMLSyntaxError, an unexpected element, ...: the
            # message (never the reply body) is enough to say what went wrong.
            raise unknown(code, f"{name} answered a reply zeep cannot read ({type(exc).__name__})") from exc
        try:
            return read_result(reply, shape)
        except ReplyShapeError as exc:
            raise unknown(code, f"{name} answered an unknown shape ({exc})") from exc


def from_target(ctx: AdapterContext) -> K3SoapAdapter:
    """The adapter of a ``transport = "k3_soap"`` target (``adapters.erp``): ``url`` is the service
    endpoint; ``options.wsdl`` a local WSDL file (default: the bundled one), ``options.binding``
    the binding's ``{namespace}name``, ``options.operations`` the site's operation names
    (``{add, lookup, update, cancel, shipments}``; "" for one the service lacks)."""
    target = ctx.target
    options = target.options
    operations = options.get("operations", {})
    if not isinstance(operations, Mapping):
        raise ConfigError(
            f"target {ctx.name}: options.operations must be a table",
            f"目标 {ctx.name}：options.operations 必须是表",
            hint='e.g. operations = { add = "addSEorder", lookup = "getSEorder" }',
        )
    try:
        return K3SoapAdapter(
            url=target.url,
            client=ctx.http,
            wsdl=options.get("wsdl") or BUNDLED_WSDL,
            binding=options.get("binding") or DEFAULT_BINDING,
            operations={str(k): str(v) for k, v in operations.items()},
            timeout=target.timeout_s,
            connect_timeout=target.connect_timeout_s,
        )
    except (OSError, ValueError, zeep_errors.Error) as exc:
        raise ConfigError(
            f"target {ctx.name}: the K3 SOAP WSDL cannot be used ({exc})",
            f"目标 {ctx.name}：K3 SOAP WSDL 不可用（{exc}）",
            hint="Point options.wsdl at the site's WSDL file and name its binding and operations in options",
        ) from exc


_K3_SOAP = Partner(
    name="K3 SOAP service",
    name_zh="K3 SOAP 服务",
    unreachable_hint="Check that the service is up and the target URL is its endpoint",
    address_hint="Check the target URL (the service's endpoint)",
    unknown=unknown,
)
