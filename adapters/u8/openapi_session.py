"""One conversation with the U8+ OpenAPI relay: the token, trade ids, and every call's errors sorted
(erp-protocols.md §2; the token handling follows O3's TokenManager).

The token is cached until shortly before ``expiresIn`` (milliseconds, as O3 reads it) runs out,
fetched again then, and also when the relay says a token is invalid — that call is then sent once
more with the new token (the relay refused it before doing anything). Transport failures are
sorted as for EAI: nothing sent → ``RetryableError``; sent, no trustworthy answer →
``UnknownOutcomeError``. Query strings carry the secret and the token, and bodies carry buyer
data, so neither a URL nor a body ever goes into an error or a log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from adapters.http_exchange import Partner, exchange
from adapters.u8.openapi_json import ReplyShapeError, parse_reply
from gateway.errors import RetryableError, UnknownOutcomeError

# Nothing reached the relay: the connection was never made or no pooled connection became free.
#: (inferred) errcodes of an unknown and of an expired token: not public; the sandbox's values.
TOKEN_ERRCODES = frozenset({"30001", "30002"})
_MAX_MARGIN_S = 10.0  # O3 fetches a new token 10 s before expiry


class OpenApiSession:
    """Token, trade ids and raw calls for one app on one relay.

    Args:
        base_url: The relay root, e.g. ``https://api.yonyouup.com`` (the sandbox: ``…/u8openapi``).
        client: The shared HTTP client.
        credentials: ``app_key``, ``app_secret``, ``from_account``, ``to_account``.
        timeout: Seconds for writing a request and reading its reply.
        connect_timeout: Seconds to wait for a connection (and for a free pooled one).
        token_errcodes: The errcodes that mean "token invalid or expired".
        clock: Monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        *,
        base_url: str,
        client: httpx.AsyncClient,
        credentials: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        token_errcodes: Collection[str] = TOKEN_ERRCODES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._creds = dict(credentials)
        self.timeout = timeout
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        self._token_errcodes = frozenset(token_errcodes)
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self._lock = asyncio.Lock()
        self.tokens_fetched = 0

    async def token(self) -> str:
        """A token that is not about to expire; fetched once for concurrent callers."""
        if self._token is not None and self._clock() < self._token_until:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._token_until:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    def refuses_token(self, reply: Mapping[str, Any]) -> bool:
        """Does ``reply`` say the token was invalid or expired?"""
        return reply.get("errcode") in self._token_errcodes

    async def tradeid(self, code: str) -> str:
        """A new trade id (O1); ``RetryableError`` when the relay gives none (nothing was written)."""
        async with _nothing_written(code):
            reply = await self.call("GET", "/system/tradeid", code=code, to_account=False)
        trade = reply.get("trade")
        trade_id = trade.get("id") if isinstance(trade, dict) else None
        if reply["errcode"] != "0" or not isinstance(trade_id, str) or not trade_id:
            raise RetryableError(
                f"U8 OpenAPI gave no trade id for sale order {code}",
                f"U8 OpenAPI 未返回销售订单 {code} 的 tradeid",
                partner_message=reply.get("errmsg") or None,
                hint="Check the app's permissions on the open platform; the order is retried",
                document_code=code,
            )
        return trade_id

    async def call(
        self,
        method: str,
        path: str,
        *,
        code: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        to_account: bool = True,
    ) -> dict[str, Any]:
        """Send one API call with the app's identity and a token; the reply object, whatever its
        errcode, except a token refusal, which is retried once with a new token."""
        for attempt in (1, 2):
            token = await self.token()
            query = {"from_account": self._creds["from_account"], "app_key": self._creds["app_key"], "token": token}
            if to_account:
                query["to_account"] = self._creds["to_account"]
            query.update(params or {})
            reply = await self.send(method, f"{self.base_url}{path}", code=code, params=query, body=body)
            if not self.refuses_token(reply):
                return reply
            self._forget(token)
            if attempt == 2:
                raise RetryableError(
                    "U8 OpenAPI refused a token it had just issued",
                    "U8 OpenAPI 拒绝了刚签发的 token",
                    partner_message=reply["errmsg"] or None,
                    hint="Check the app's from_account and app_key; the order is retried",
                    document_code=code,
                )
        raise AssertionError("unreachable")

    async def send(
        self,
        method: str,
        url: str,
        *,
        code: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        within_s: float | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange, its failures sorted; the parsed reply object. ``within_s`` caps the
        wait for the reply below the session's timeout (the rest of a polling deadline)."""
        headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else None
        request_timeout = (
            self._timeout
            if within_s is None
            else httpx.Timeout(
                min(max(within_s, 0.001), self.timeout), connect=self._timeout.connect, pool=self._timeout.pool
            )
        )
        # The relay answers every business outcome with 200 (§5); other statuses come from a proxy.
        response = await exchange(
            self._client,
            _U8_OPENAPI,
            method,
            url,
            code=code,
            what="the U8 OpenAPI call",
            params=params,
            content=body,
            headers=headers,
            timeout=request_timeout,
        )
        try:
            return parse_reply(response.content)
        except ReplyShapeError as exc:
            raise unknown(code, f"U8 OpenAPI sent an unrecognised reply ({exc})") from exc

    async def _fetch_token(self) -> None:
        params = {k: self._creds[k] for k in ("from_account", "app_key", "app_secret")}
        async with _nothing_written(""):
            reply = await self.send("GET", f"{self.base_url}/system/token", code="", params=params)
        token = reply.get("token")
        token_id = token.get("id") if isinstance(token, dict) else None
        expires_ms = token.get("expiresIn") if isinstance(token, dict) else None
        if reply["errcode"] != "0" or not isinstance(token_id, str) or not token_id:
            raise RetryableError(
                "U8 OpenAPI refused a token for the app",
                "U8 OpenAPI 拒绝签发 token",
                partner_message=reply["errmsg"] or None,
                hint="Check app_key, app_secret and from_account in the target's [auth] (environment variables)",
            )
        try:
            lifetime = max(float(expires_ms) / 1000, 0.0)
        except (TypeError, ValueError):
            lifetime = 0.0  # no usable expiry: use the token for this call only
        self._token = token_id
        self._token_until = self._clock() + lifetime - min(_MAX_MARGIN_S, lifetime / 10)
        self.tokens_fetched += 1

    def _forget(self, token: str) -> None:
        if self._token == token:
            self._token, self._token_until = None, 0.0


@asynccontextmanager
async def _nothing_written(code: str) -> AsyncIterator[None]:
    """Token and trade-id requests write nothing: a lost reply to them is retryable, not unknown."""
    try:
        yield
    except UnknownOutcomeError as exc:
        raise RetryableError(
            f"U8 OpenAPI gave no usable answer to a token or trade-id request ({exc.message_en}); nothing was written",
            "U8 OpenAPI 未正常应答 token 或 tradeid 请求，未写入任何单据",
            hint="Check that the relay is reachable; the order is retried",
            document_code=code or None,
        ) from exc


def unknown(code: str, reason: str, **details: Any) -> UnknownOutcomeError:
    return UnknownOutcomeError(
        f"Outcome of U8 OpenAPI sale order {code} unknown: {reason}",
        f"U8 OpenAPI 销售订单 {code} 结果未知，需先查询",
        document_code=code,
        **details,
    )


_U8_OPENAPI = Partner(
    name="U8 OpenAPI",
    name_zh="U8 OpenAPI",
    unreachable_hint="Check that the relay is reachable and the target's url is right",
    address_hint="Check the target's url (the relay root, e.g. https://api.yonyouup.com)",
    unknown=unknown,
)
