"""One HTTP exchange with a partner system, its failures sorted by what the caller does next.

Every ERP transport over HTTP meets the same transport failures and reads them the same way:

* nothing reached the partner (no connection, no free pooled connection): ``RetryableError``;
* the request was sent and the answer did not come back whole (read timeout, dropped
  connection): the partner may have written it, an unknown outcome (``unknown``);
* 502 / 503 from a proxy or a partner that is starting: nothing was processed, retryable;
* any other 5xx: the partner may have failed half-way through a write (U8 answers 500 for
  malformed data and when it crashes mid-write, erp-protocols.md §1.5), an unknown outcome;
* 3xx / 4xx come from the web server before the partner's page or service runs: nothing was
  processed, retryable, with a hint that the address is likely wrong.

The bodies hold buyer names, phones and addresses: they never go into an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.errors import RetryableError, UnknownOutcomeError

#: Nothing reached the partner: the connection was never made or no pooled connection became free.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class Partner:
    """How errors name the partner, and what to tell the operator.

    Attributes:
        name / name_zh: the system, e.g. ``U8 EAI`` / ``U8 EAI``.
        unreachable_hint: what to check when nothing could be sent.
        address_hint: what to check when the web server refused the address (3xx/4xx).
        unknown: builds the transport's ``UnknownOutcomeError`` (code, reason, **details).
    """

    name: str
    name_zh: str
    unreachable_hint: str
    address_hint: str
    unknown: Callable[..., UnknownOutcomeError]


def not_sent(partner: Partner, exc: Exception, code: str) -> RetryableError:
    return RetryableError(
        f"{partner.name} unreachable ({type(exc).__name__}); nothing was sent",
        f"{partner.name_zh} 无法连接，未发送",
        hint=partner.unreachable_hint,
        document_code=code,
    )


async def exchange(
    client: httpx.AsyncClient, partner: Partner, method: str, url: str, *, code: str, what: str, **request: Any
) -> httpx.Response:
    """Send one request; the response when its status is 200, else the sorted error.

    Args:
        what: names the call in an unknown outcome's reason (``saleorder/add``, ``SO/Save``).
        request: passed to ``client.request`` (``params``, ``content``, ``headers``, ``timeout``).
    """
    try:
        response = await client.request(method, url, **request)
    except NOT_SENT as exc:
        raise not_sent(partner, exc, code) from exc
    except httpx.RequestError as exc:
        raise partner.unknown(code, f"{what} failed after sending ({type(exc).__name__})") from exc
    status = response.status_code
    if status in (502, 503):
        raise RetryableError(
            f"{partner.name} answered HTTP {status}",
            f"{partner.name_zh} 返回 HTTP {status}",
            document_code=code,
            http_status=status,
        )
    if status >= 500:
        raise partner.unknown(code, f"{what} answered HTTP {status}", http_status=status)
    if status != 200:
        raise RetryableError(
            f"{partner.name} answered HTTP {status}",
            f"{partner.name_zh} 返回 HTTP {status}",
            hint=partner.address_hint,
            document_code=code,
            http_status=status,
        )
    return response
