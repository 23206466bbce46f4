"""How the K3 SOAP adapter (``adapters.k3.soap``) turns what went wrong into the gateway's errors
(``gateway.errors``), with the service's own words as ``partner_message`` and an operator hint.
The rules are listed in ``adapters.k3.soap``'s docstring. No reply body is ever copied in.
"""

from __future__ import annotations

from typing import Any

from zeep import exceptions as zeep_errors

from adapters.k3.soap_transport import BadReply
from gateway.errors import PermanentError, RetryableError, UnknownOutcomeError

_GENERIC_HINT = "Read the service's message, correct the document data or K3's base data, then replay the dead letter"
_MAX_PARTNER_TEXT = 500


def partner_text(message: str | None) -> str | None:
    """The service's message, cut to a length an error and a dead letter can carry."""
    return None if message is None else message[:_MAX_PARTNER_TEXT]


def rejected(code: str, verb: str, verb_zh: str, result: dict[str, Any]) -> PermanentError:
    """``Status ≠ 0``: the wrapper (or K3 behind it) said no."""
    return PermanentError(
        f"The K3 SOAP service {verb} sales order {code}",
        f"K3 SOAP 服务{verb_zh}销售订单 {code}",
        partner_message=partner_text(result["Message"]),
        hint=hint_for(result["Message"]),
        document_code=code,
        service_status=result["Status"],
    )


def hint_for(message: str) -> str:
    """What an operator does about a refusal, from its (Chinese, inferred §6) text."""
    if "物料" in message:
        return "Add the item's number to the SKU value table or create it in K3, then replay the dead letter"
    if "购货单位" in message or "客户" in message:
        return "Map the shop to an existing K3 customer number in the value table or create it in K3, then replay"
    if "部门" in message or "业务员" in message or "职员" in message:
        return "Set an existing department / employee number in the target's params, then replay the dead letter"
    if "计量单位" in message:
        return "Set an existing unit number in the target's params (unit), then replay the dead letter"
    if "结账" in message:
        return "The period of the order date is closed in K3: reopen it or change the date rule, then replay"
    return _GENERIC_HINT


def unrenderable(code: str, reason: str) -> PermanentError:
    """The document does not fit the WSDL's message: nothing was sent."""
    return PermanentError(
        f"Sales order {code} cannot be rendered as the service's FormSEOrder: {reason}",
        f"销售订单 {code} 无法生成 K3 SOAP 报文：{reason}",
        hint="Fix the outbound dictionary (mappings/erp/k3soap_seorder.toml) or the value tables against the "
        "site's WSDL, then replay the dead letter",
        document_code=code,
    )


def unknown(code: str, reason: str, **details: Any) -> UnknownOutcomeError:
    """The order may have been written: the core looks it up before the next attempt."""
    return UnknownOutcomeError(
        f"Outcome of K3 sales order {code} unknown: {reason}",
        f"K3 销售订单 {code} 结果未知，需先查询",
        document_code=code,
        **details,
    )


def from_bad_reply(code: str, name: str, exc: BadReply) -> Exception:
    """An HTTP status without SOAP, garbage or hostile XML: 502/503 and other refusals before the
    service ran are retryable, 413 permanent, the rest (500 pages, unreadable bodies) unknown."""
    status = exc.http_status
    if status in (502, 503):
        return RetryableError(
            f"K3 SOAP service answered HTTP {status}", f"K3 SOAP 服务返回 HTTP {status}", document_code=code
        )
    if status == 413:
        return PermanentError(
            "The K3 SOAP service refused the message as too large (HTTP 413)",
            "K3 SOAP 服务因报文过大拒收（HTTP 413）",
            hint="Raise maxReceivedMessageSize in the service's binding configuration, then replay",
            document_code=code,
        )
    if 300 <= status < 500:
        # IIS/WCF refused it before the service ran: a wrong URL, content type or SOAPAction.
        return RetryableError(
            f"K3 SOAP service answered HTTP {status}",
            f"K3 SOAP 服务返回 HTTP {status}",
            hint="Check the target URL (the service endpoint) and that the WSDL is the site's",
            document_code=code,
            http_status=status,
        )
    error = unknown(code, f"{name}: {exc.reason}", http_status=status)
    if exc.unsafe:
        error.hint = "The service sent XML with a DTD or entities: have the site check its wrapper; it was not read"
    return error


def from_fault(code: str, name: str, exc: zeep_errors.Fault) -> Exception:
    """SOAP faults by faultcode: ``Client`` (and ``Client.*`` subcodes) is the sender's fault and
    nothing was processed → permanent; ``Server`` or anything else may come after a write → unknown."""
    faultcode = (exc.code or "").rpartition(":")[2]
    if not faultcode:
        return unknown(code, f"{name} answered an error that is not a SOAP fault")
    if faultcode == "Client" or faultcode.startswith("Client."):
        return PermanentError(
            f"The K3 SOAP service refused the {name} message (SOAP fault {faultcode})",
            f"K3 SOAP 服务拒收 {name} 报文（SOAP fault {faultcode}）",
            partner_message=partner_text(exc.message),
            hint="The message does not fit the site's service: compare the WSDL and the outbound dictionary "
            "with the site's, then replay the dead letter",
            document_code=code,
            faultcode=faultcode,
        )
    return unknown(
        code, f"{name} answered SOAP fault {faultcode}", partner_message=partner_text(exc.message), faultcode=faultcode
    )
