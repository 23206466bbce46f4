"""The circuit breaker of ``gateway.circuit`` shared by every worker through Redis.

Same state machine, same configuration, one circuit per target for all processes on all
machines: the consecutive-failure count is shared (a success anywhere resets it), the circuit
opens once for everyone, and while half-open at most ``half_open_probes`` probes are in flight
across the whole fleet. Each step is one Lua script (read, advance, act, write atomically); time
comes from the Redis server, as in ``adapters.redis.limits``.

Keys, per target (``{prefix}`` defaults to ``gateway:circuit``):

* ``{prefix}:{target}`` — hash ``state``, ``failures``, ``opened_at`` (server ms);
* ``{prefix}:{target}:probes`` — sorted set of the probes in flight, scored by start (ms). A probe
  whose worker died is forgotten after ``probe_timeout_s``.

Redis holds no order data: after a restart of a Redis without persistence every circuit starts
closed, and the next failures open it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from redis.asyncio import Redis

from adapters.redis.limits import UNAVAILABLE, unavailable
from gateway.circuit import CallOutcome, CircuitConfig, CircuitState, Pass
from gateway.ids import new_id
from gateway.logging import get_logger

log = get_logger("adapters.redis.circuit")

DEFAULT_PREFIX = "gateway:circuit"

# KEYS: the hash, the probes. ARGV: op (allow|success|failure|cancelled|read), failure threshold,
# open ms, half-open probes, probe timeout ms, probe id.
# Returns {state before, state after, allowed 0/1, retry after ms}.
_STEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local open_ms = tonumber(ARGV[3])
local max_probes = tonumber(ARGV[4])
local probe_ms = tonumber(ARGV[5])
local probe = ARGV[6]
local saved = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at')
local state = saved[1] or 'closed'
local failures = tonumber(saved[2]) or 0
local opened = tonumber(saved[3]) or 0
local before = state
if state == 'open' and now >= opened + open_ms then
  state = 'half_open'
end
if state == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - probe_ms)
end
local function trip()
  state = 'open'
  opened = now
  failures = 0
  redis.call('DEL', KEYS[2])
end
local allowed = 0
local retry = 0
if op == 'allow' then
  if state == 'closed' then
    allowed = 1
  elseif state == 'open' then
    retry = opened + open_ms - now
  elseif redis.call('ZCARD', KEYS[2]) < max_probes then
    redis.call('ZADD', KEYS[2], now, probe)
    allowed = 1
  else
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    retry = math.min(open_ms, tonumber(oldest[2]) + probe_ms - now)
  end
elseif op == 'success' then
  if state == 'closed' then
    failures = 0
  elseif state == 'half_open' and redis.call('ZREM', KEYS[2], probe) == 1 then
    failures = 0
    redis.call('DEL', KEYS[2])
    state = 'closed'
  end
elseif op == 'failure' then
  if state == 'closed' then
    failures = failures + 1
    if failures >= threshold then
      trip()
    end
  elseif state == 'half_open' and redis.call('ZREM', KEYS[2], probe) == 1 then
    trip()
  end
elseif op == 'cancelled' then
  redis.call('ZREM', KEYS[2], probe)
end
redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'opened_at', opened)
return {before, state, allowed, math.max(0, retry)}
"""


class RedisCircuits:
    """``CircuitBoard`` in Redis.

    Args:
        redis: A client from ``adapters.redis.connection.redis_client``.
        configs: Per-target circuit settings; others get ``default``.
        on_change: Called with ``(target, old, new)`` for each transition this process makes
            or first sees, e.g. to set ``Metrics.set_circuit`` and log.
        prefix: Key prefix, to keep several gateways apart on one Redis.
    """

    def __init__(
        self,
        redis: Redis,
        configs: Mapping[str, CircuitConfig] | None = None,
        *,
        on_change: Callable[[str, CircuitState, CircuitState], None] | None = None,
        default: CircuitConfig | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.redis = redis
        self._configs = dict(configs or {})
        self._default = default or CircuitConfig()
        self._on_change = on_change
        self.prefix = prefix
        self._script = redis.register_script(_STEP)
        self._seen: dict[str, CircuitState] = {}

    def keys(self, target: str) -> list[str]:
        return [f"{self.prefix}:{target}", f"{self.prefix}:{target}:probes"]

    async def _step(self, target: str, op: str, probe: str = "") -> tuple[CircuitState, bool, float]:
        cfg = self._configs.get(target, self._default)
        args = [
            op,
            cfg.failure_threshold,
            round(cfg.open_seconds * 1000),
            cfg.half_open_probes,
            round(cfg.probe_timeout_s * 1000),
            probe,
        ]
        before, after, allowed, retry_ms = await self._script(keys=self.keys(target), args=args)
        before, after = _text(before), _text(after)
        seen = self._seen.get(target, "closed")  # what this process's gauge shows until told otherwise
        self._seen[target] = after  # type: ignore[assignment]
        if self._on_change is not None and seen != after:
            self._on_change(target, seen, after)  # type: ignore[arg-type]
        return after, bool(int(allowed)), int(retry_ms) / 1000  # type: ignore[return-value]

    async def allow(self, target: str) -> Pass:
        probe = new_id()
        try:
            state, allowed, retry = await self._step(target, "allow", probe)
        except UNAVAILABLE as exc:
            raise unavailable(self.redis, exc) from exc
        if not allowed:
            return Pass(False, retry_after=retry)
        return Pass(True, probe=probe if state == "half_open" else None)

    async def record(self, target: str, ticket: Pass, outcome: CallOutcome) -> None:
        """Report a call; when Redis is out of reach, log and return: a lost success or failure
        only delays a transition, and a lost probe is forgotten after ``probe_timeout_s``."""
        try:
            await self._step(target, outcome, ticket.probe or "")
        except UNAVAILABLE as exc:
            log.warning("could not record a call in the shared circuit", target=target, error=type(exc).__name__)

    async def read(self, targets: Iterable[str]) -> dict[str, CircuitState]:
        """Each target's shared state (an open circuit whose interval passed reads half-open)."""
        out: dict[str, CircuitState] = {}
        for target in targets:
            try:
                out[target] = (await self._step(target, "read"))[0]
            except UNAVAILABLE as exc:
                raise unavailable(self.redis, exc) from exc
        return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
