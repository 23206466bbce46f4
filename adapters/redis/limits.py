"""The ERP limits of ``gateway.limits`` shared by every worker on every machine through Redis.

Each check is one Lua script, so reading and updating the shared state is atomic: two workers
can never both take the last permit or the last token. Time comes from the Redis server
(``TIME``), so machines whose clocks disagree still share one notion of "expired" and of
"a second". Redis 7 replicates a script's effects, not the script, which is what makes ``TIME``
inside a script safe.

Keys, per target (``{prefix}`` defaults to ``gateway:limits``):

* ``{prefix}:concurrency:{target}`` — sorted set of permit ids scored by expiry (ms). Expired
  members are dropped on every acquire, so a SIGKILLed worker's permit frees itself after the TTL.
* ``{prefix}:rate:{target}`` — hash ``tokens``, ``at`` (server seconds): one token bucket.

Both keys expire on their own once idle. Redis here holds no order data: after a restart of a
Redis without persistence the limits start empty, so calls already in flight are not counted
until they finish (the ERP may briefly see up to twice its concurrency).
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.limits import LimitsConfig, LimitsUnavailableError, Permit, TargetLimits, new_permit_id
from gateway.logging import get_logger

log = get_logger("adapters.redis.limits")

DEFAULT_PREFIX = "gateway:limits"

# Failures that mean "Redis is not there right now": refused or dropped connections, timeouts,
# a replica that was a master before a failover. Anything else (a script error) is a bug and is
# left to propagate rather than be retried for ever.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)

# KEYS[1] permits; ARGV: concurrency, ttl (ms), permit id. Returns the expiry (ms), or -1 when full.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return -1
end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return expires
"""

# KEYS[1] bucket; ARGV: rate per second, burst. Returns the wait in seconds as a string (Lua
# numbers come back from Redis as integers, which would round every wait to zero).
_BUCKET_STEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1])
local at = tonumber(saved[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


def unavailable(redis: Redis, exc: Exception) -> LimitsUnavailableError:
    kw = redis.connection_pool.connection_kwargs
    where = f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return LimitsUnavailableError(
        f"Redis at {where} is unavailable ({type(exc).__name__}: {exc}); no ERP call was made, will retry",
        f"Redis（{where}）不可用（{type(exc).__name__}）；未调用 ERP，稍后重试",
        hint="Check that Redis (GATEWAY_REDIS_URL) is running and reachable from the workers",
    )


class _RedisLimits(TargetLimits):
    """Limits kept in Redis under ``{prefix}:{kind}:{target}``, checked by one Lua script.

    Args:
        redis: A client from ``adapters.redis.connection.redis_client``.
        limits: Per-target limits; others get ``default``.
        default: Limits of targets not listed.
        prefix: Key prefix, to keep several gateways apart on one Redis.
    """

    _kind: str  # the middle of the key
    _source: str  # the Lua script

    def __init__(
        self,
        redis: Redis,
        limits: Mapping[str, LimitsConfig] | None = None,
        *,
        default: LimitsConfig | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(limits, default=default)
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(self._source)

    def key(self, target: str) -> str:
        return f"{self.prefix}:{self._kind}:{target}"


class RedisConcurrencyLimiter(_RedisLimits):
    """``ConcurrencyLimiter`` shared through Redis by every worker (arguments: ``_RedisLimits``)."""

    _kind = "concurrency"
    _source = _ACQUIRE

    async def acquire(self, target: str) -> Permit | None:
        cfg = self.config(target)
        permit_id = new_permit_id()
        ttl_ms = max(1, round(cfg.permit_ttl_s * 1000))
        try:
            # After a Redis restart the script cache is empty; redis-py's script object then
            # loads the script again on NOSCRIPT and retries, so nothing to do here. A call the
            # client retried after a lost reply may have taken a permit nobody holds: it expires
            # after the TTL like a dead worker's.
            expires_ms = int(await self._script(keys=[self.key(target)], args=[cfg.concurrency, ttl_ms, permit_id]))
        except UNAVAILABLE as exc:
            raise unavailable(self.redis, exc) from exc
        if expires_ms < 0:
            return None
        return Permit(target=target, id=permit_id, expires_at=expires_ms / 1000)

    async def release(self, permit: Permit) -> None:
        """Give the permit back. When Redis is unreachable this logs and returns instead of
        raising: the call it guarded is over and its result recorded, and the permit expires on
        its own after the TTL."""
        try:
            await self.redis.zrem(self.key(permit.target), permit.id)
        except UNAVAILABLE as exc:
            log.warning(
                "could not release an ERP permit; it expires on its own",
                target=permit.target,
                permit=permit.id,
                error=type(exc).__name__,
            )

    async def in_use(self, target: str) -> int:
        """Permits held for ``target`` now (expired ones not yet dropped are counted)."""
        try:
            return int(await self.redis.zcard(self.key(target)))
        except UNAVAILABLE as exc:
            raise unavailable(self.redis, exc) from exc


class RedisRateLimiter(_RedisLimits):
    """``RateLimiter`` shared through Redis: one token bucket per target for all workers; a target
    without ``rate_per_s`` is not limited (arguments: ``_RedisLimits``)."""

    _kind = "rate"
    _source = _BUCKET_STEP

    async def try_acquire(self, target: str) -> float:
        cfg = self.config(target)
        if cfg.rate_per_s is None:
            return 0.0
        try:
            wait = await self._script(keys=[self.key(target)], args=[repr(cfg.rate_per_s), cfg.burst])
        except UNAVAILABLE as exc:
            raise unavailable(self.redis, exc) from exc
        return float(wait)
