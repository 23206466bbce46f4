"""The K3 WISE WebAPI session every worker shares (reference/erp-protocols.md §3.1).

K3 binds a token to an account set (账套) and a new ``Token/Create`` for that set ends the
previous token. Workers that each log in for themselves would therefore throw each other out in
turn — every call a rejection, every rejection a new login. The broker keeps one token per
(K3 root, account set) for all workers together:

* with Redis, the token lives under ``{prefix}:{hash of root and account set}`` with a TTL of its
  ``Validity`` less a margin, so it is replaced before K3 would refuse it. One worker at a time
  logs in, under a lock (``SET NX PX``); the others wait for its token and read it.
* a worker whose call is refused for its token re-logs-in only if Redis still holds *that*
  token: when four workers are refused at once, the first one in logs in and the other three find
  the new token already there (compare, then log in — never log in blindly).
* without Redis (the embedded queue: one process), the same logic under an ``asyncio.Lock``.

The authority code and the tokens are credentials: they are never logged nor put in an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import TYPE_CHECKING

import httpx
from redis.exceptions import RedisError

from adapters.k3.k3json import ReplyShapeError, field, parse_envelope
from gateway.errors import PermanentError, RetryableError
from gateway.ids import new_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_PREFIX = "gateway:k3:token"
#: Used when Token/Create gives no usable ``Validity``. Its unit is not documented (§3.1); the
#: simulator and this broker read it as seconds (inferred).
DEFAULT_VALIDITY_S = 1800.0
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_HINT = "Check the K3 authority code ([targets.X.auth] authority_code) and the account set it is bound to"


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class TokenBroker:
    """Hands out the current K3 token of one account set, logging in only when it must.

    Args:
        root: The K3 WebAPI root (``http://host/K3API`` is ``root + "/K3API"``).
        authority_code: The ``authorityCode`` issued by the site's K3API.
        account_set: The account set the code is bound to; with the root, the key of the shared
            token. None: a hash of the code stands in for it.
        client: The HTTP client for ``Token/Create``.
        timeout: Timeouts of the login call.
        redis: Where the token is shared; None keeps it in this process.
        margin_s: Replace a token this long before its ``Validity`` ends (at most a quarter of it).
        validity_s: Use this instead of the ``Validity`` K3 answers, for a site whose K3API states
            it in another unit than seconds (the unit is not documented, §3.1).
        wait_s: How long a worker waits for another worker's login before giving up (retryable).
        prefix: Redis key prefix.
    """

    def __init__(
        self,
        *,
        root: str,
        authority_code: str,
        account_set: str | None,
        client: httpx.AsyncClient,
        timeout: httpx.Timeout,
        redis: Redis | None = None,
        margin_s: float = 60.0,
        validity_s: float | None = None,
        wait_s: float = 30.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._url = f"{root.rstrip('/')}/K3API/Token/Create"
        self._code = authority_code
        self._client = client
        self._timeout = timeout
        self._redis = redis
        self._margin_s = margin_s
        self._validity_s = validity_s
        self._wait_s = wait_s
        who = account_set or "code:" + hashlib.sha256(authority_code.encode()).hexdigest()
        digest = hashlib.sha256(f"{root.rstrip('/')}|{who}".encode()).hexdigest()[:24]
        self.key = f"{prefix}:{digest}"
        self._lock_key = f"{self.key}:lock"
        connect = timeout.connect or 5.0
        self._lock_ms = int(((timeout.read or 30.0) + connect + 5.0) * 1000)
        self._local: tuple[str, float] | None = None  # (token, monotonic time to replace it)
        self._local_lock: asyncio.Lock | None = None
        self.logins = 0  # Token/Create calls this broker made (tests and metrics)

    async def token(self) -> str:
        """The current token, logging in when there is none or it is about to expire."""
        return await self._obtain(stale=None)

    async def rejected(self, token: str) -> str:
        """K3 refused ``token``: a newer token, logging in only if ``token`` is still the current one."""
        return await self._obtain(stale=token)

    # -- shared through Redis -----------------------------------------------------------------

    async def _obtain(self, stale: str | None) -> str:
        if self._redis is None:
            return await self._obtain_local(stale)
        try:
            return await self._obtain_shared(self._redis, stale)
        except RedisError as exc:
            raise RetryableError(
                f"the shared K3 session store (Redis) failed ({type(exc).__name__}); nothing was sent to K3",
                "K3 会话存储（Redis）不可用，未发送到 K3",
                hint="Check GATEWAY_REDIS_URL and that Redis is up",
            ) from exc

    async def _obtain_shared(self, redis: Redis, stale: str | None) -> str:
        deadline = time.monotonic() + self._wait_s
        while True:
            current = _text(await redis.get(self.key))
            if current and current != stale:
                return current
            owner = new_id()
            if await redis.set(self._lock_key, owner, nx=True, px=self._lock_ms):
                try:
                    # Another worker may have finished its login between our read and our lock.
                    current = _text(await redis.get(self.key))
                    if current and current != stale:
                        return current
                    token, ttl_s = await self._login()
                    await redis.set(self.key, token, px=max(int(ttl_s * 1000), 1))
                    return token
                finally:
                    await redis.eval(_UNLOCK, 1, self._lock_key, owner)
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"another worker's K3 login did not finish within {self._wait_s:g}s; nothing was sent",
                    f"其他进程登录 K3 超过 {self._wait_s:g} 秒未完成，未发送",
                    hint="Check that K3's Token/Create answers; the delivery will retry",
                )
            await asyncio.sleep(0.02 + random.random() * 0.03)  # noqa: S311 - jitter, not a secret

    # -- in this process ------------------------------------------------------------------------

    async def _obtain_local(self, stale: str | None) -> str:
        if (current := self._valid_local()) and current != stale:
            return current
        if self._local_lock is None:
            self._local_lock = asyncio.Lock()
        async with self._local_lock:
            if (current := self._valid_local()) and current != stale:
                return current
            token, ttl_s = await self._login()
            self._local = (token, time.monotonic() + ttl_s)
            return token

    def _valid_local(self) -> str | None:
        if self._local is None or time.monotonic() >= self._local[1]:
            return None
        return self._local[0]

    # -- Token/Create -----------------------------------------------------------------------------

    async def _login(self) -> tuple[str, float]:
        """Log in; the token and how long to use it (its ``Validity`` less the margin).

        Raises:
            RetryableError: K3 unreachable or an unreadable answer (a login writes no document).
            PermanentError: K3 refused the authority code.
        """
        self.logins += 1
        try:
            response = await self._client.get(self._url, params={"authorityCode": self._code}, timeout=self._timeout)
        except httpx.RequestError as exc:
            raise RetryableError(
                f"K3 Token/Create failed ({type(exc).__name__}); nothing was sent",
                "K3 获取 Token 失败，未发送单据",
                hint="Check that the K3 WebAPI is up and the target URL is its root",
            ) from exc
        if response.status_code != 200:
            raise RetryableError(
                f"K3 Token/Create answered HTTP {response.status_code}",
                f"K3 获取 Token 返回 HTTP {response.status_code}",
                hint="Check the target URL: it is the root in front of /K3API",
                http_status=response.status_code,
            )
        try:
            reply = parse_envelope(response.content)
        except ReplyShapeError as exc:
            raise RetryableError(
                f"K3 Token/Create sent an unrecognised reply ({exc})", "K3 获取 Token 的应答无法识别"
            ) from exc
        if reply.status != 200:
            raise PermanentError(
                "K3 refused the authority code",
                "K3 拒绝了授权码（authorityCode）",
                partner_message=reply.message,
                hint=_HINT,
            )
        data = reply.data if isinstance(reply.data, dict) else {}
        token = field(data, "Token")
        if not isinstance(token, str) or not token:
            raise RetryableError("K3 Token/Create answered without Data.Token", "K3 获取 Token 的应答缺少 Token")
        return token, self._ttl(field(data, "Validity"))

    def _ttl(self, validity: object) -> float:
        if self._validity_s is not None:
            validity = self._validity_s
        try:
            seconds = float(validity)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = DEFAULT_VALIDITY_S
        if not 0 < seconds < 366 * 86400:  # NaN, zero, negative or absurd: not a usable validity
            seconds = DEFAULT_VALIDITY_S
        return seconds - min(self._margin_s, seconds / 4)
