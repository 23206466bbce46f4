"""Protect the legacy ERP (CONTRACT §5): how many documents may be in flight towards one target at
once, and how many may start per second.

Two ports, each with two implementations:

* here, in-process (asyncio, clock-injected) for the embedded queue, where one process does all
  the delivering;
* ``adapters/redis/limits.py``, shared through Redis by every worker on every machine.

Both are non-blocking: a caller that gets no permit or a wait time reschedules or sleeps. The
one exception is ``PermitQueue``, put in front of either by the delivering processes: the callers
of one process wait there in line, and a permit released in the process goes to the first of them
at once. A permit carries a lease: one its holder never releases (the worker was SIGKILLed
mid-call) frees itself after ``permit_ttl_s``, so the TTL must exceed the longest ERP call
(``timeout_s + connect_timeout_s`` of the target).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Annotated, Generic, Protocol, TypeVar

import msgspec
from msgspec import Meta

from gateway.errors import RetryableError

_S = TypeVar("_S")


class LimitsConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The capacity of one ERP target (``[targets.X.limits]``)."""

    concurrency: Annotated[int, Meta(ge=1)] = 2
    """Documents in flight at once towards the target, across all workers."""
    rate_per_s: Annotated[float, Meta(gt=0)] | None = None
    """Documents started per second, on average; None: no rate limit."""
    burst: Annotated[int, Meta(ge=1)] = 1
    """Documents that may start back to back after a quiet spell (the token bucket's size)."""
    permit_ttl_s: Annotated[float, Meta(gt=0)] = 60.0
    """How long an unreleased permit lives; longer than the target's longest call."""


class Permit(msgspec.Struct, frozen=True, kw_only=True):
    """One slot of a target's concurrency, held for one ERP call."""

    target: str
    id: str
    expires_at: float  # in the issuing limiter's clock (Redis: server time), for diagnostics


class LimitsUnavailableError(RetryableError):
    """The shared limiter (Redis) could not be reached. No ERP call was made: the caller treats
    this like any retryable failure and tries again later; the outbox still holds the work."""

    code = "LIMITS_UNAVAILABLE"
    message_zh = "限流服务（Redis）不可用，稍后重试"
    message_en = "The rate and concurrency limiter (Redis) is unavailable; will retry"


class ConcurrencyLimiter(Protocol):
    async def acquire(self, target: str) -> Permit | None:
        """A permit for one call to ``target``, or None when ``concurrency`` are out. Never waits.

        Raises:
            LimitsUnavailableError: the shared store is unreachable.
        """

    async def release(self, permit: Permit) -> None:
        """Give the permit back. Releasing twice, or after it expired, is harmless."""


class RateLimiter(Protocol):
    async def try_acquire(self, target: str) -> float:
        """Take one start from ``target``'s token bucket: 0.0 when taken, else the seconds until
        one will be there (nothing is taken then). Never waits.

        Raises:
            LimitsUnavailableError: the shared store is unreachable.
        """


def new_permit_id() -> str:
    """Unique across processes and machines, so one worker cannot release another's permit."""
    return secrets.token_hex(12)


class TargetLimits:
    """The limits of each target, and the default for targets not listed: every limiter's base.

    Args:
        limits: Per-target limits.
        default: Limits of targets not listed (``LimitsConfig()`` when None).
    """

    def __init__(
        self, limits: Mapping[str, LimitsConfig] | None = None, *, default: LimitsConfig | None = None
    ) -> None:
        self._limits = dict(limits or {})
        self._default = default or LimitsConfig()

    def config(self, target: str) -> LimitsConfig:
        """The limits of ``target``."""
        return self._limits.get(target, self._default)


class _InProcess(TargetLimits, Generic[_S]):
    """Limits kept in this process, one state ``_S`` per target.

    Args:
        limits: Per-target limits; others get ``default``.
        clock: Monotonic seconds; a fake one in tests.
        default: Limits of targets not listed.
    """

    def __init__(
        self,
        limits: Mapping[str, LimitsConfig] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        default: LimitsConfig | None = None,
    ) -> None:
        super().__init__(limits, default=default)
        self._clock = clock
        self._state: dict[str, _S] = {}  # per target


class InProcessConcurrencyLimiter(_InProcess[dict[str, float]]):
    """Concurrency per target inside one process (the embedded queue); state: permit id → expiry
    on the injected clock."""

    async def acquire(self, target: str) -> Permit | None:
        cfg = self.config(target)
        now = self._clock()
        held = self._state.setdefault(target, {})
        # A permit whose holder forgot it (a bug, a task cancelled at the wrong moment) must not
        # shrink the ERP's capacity forever.
        for pid in [p for p, exp in held.items() if exp <= now]:
            del held[pid]
        if len(held) >= cfg.concurrency:
            return None
        permit = Permit(target=target, id=new_permit_id(), expires_at=now + cfg.permit_ttl_s)
        held[permit.id] = permit.expires_at
        return permit

    async def release(self, permit: Permit) -> None:
        self._state.get(permit.target, {}).pop(permit.id, None)

    def in_use(self, target: str) -> int:
        """Permits held for ``target`` now, expired ones excluded."""
        now = self._clock()
        return sum(1 for exp in self._state.get(target, {}).values() if exp > now)


class InProcessRateLimiter(_InProcess[tuple[float, float]]):
    """A token bucket per target inside one process: ``rate_per_s`` tokens a second, at most
    ``burst`` saved up; a target without ``rate_per_s`` is not limited. State: (tokens, at)."""

    async def try_acquire(self, target: str) -> float:
        cfg = self.config(target)
        if cfg.rate_per_s is None:
            return 0.0
        bucket, wait = take_token(self._state.get(target), self._clock(), cfg.rate_per_s, cfg.burst)
        self._state[target] = bucket
        return wait


class PermitQueue:
    """A ``ConcurrencyLimiter`` in front of another one that lets a caller wait for a permit, first
    come first served, instead of getting None at once.

    Without it a caller that finds every permit out polls (``deliver`` sleeps 50 ms between
    tries), so a permit freed just after a poll stays unused until the next one — with ERP calls
    of 20 ms that is most of a call — and any newcomer may take it first. Here the callers of one
    process queue per target: a permit released through this object goes at once to the head of
    the queue, and only the head asks the inner limiter again every ``poll_s``, for permits freed
    elsewhere (another process sharing the Redis limiter, a permit whose TTL ran out). A caller
    still waiting after ``wait_s`` gets None, as from any limiter.

    Args:
        inner: The limiter that holds the permits (in-process or Redis).
        wait_s: The longest a caller waits; 0 asks once, like ``inner``.
        poll_s: How often the head of a queue asks ``inner`` while it waits.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        inner: ConcurrencyLimiter,
        *,
        wait_s: float,
        poll_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._clock = clock
        self._queues: dict[str, deque[_Waiter]] = {}

    def waiting(self, target: str) -> int:
        """Callers of this process waiting for a permit for ``target``."""
        return len(self._queues.get(target, ()))

    async def acquire(self, target: str) -> Permit | None:
        queue = self._queues.setdefault(target, deque())
        if not queue:  # nobody waits: a free permit is this caller's
            permit = await self.inner.acquire(target)
            if permit is not None or self.wait_s <= 0:
                return permit
        loop = asyncio.get_running_loop()
        me = _Waiter(loop)
        queue.append(me)
        deadline = self._clock() + self.wait_s
        try:
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                # A bare future rather than an Event: a hand-off wakes this task directly, not
                # through helper tasks that each wait for their turn in the event loop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.poll_s) if queue[0] is me else remaining):
                        await me.future
                me.future = loop.create_future()
                if queue[0] is me:  # handed a released permit, or the head's turn to poll
                    permit = await self.inner.acquire(target)
                    if permit is not None:
                        return permit
        finally:
            was_head = queue[0] is me
            queue.remove(me)
            if was_head and queue:
                queue[0].wake()  # the next in line is the head now: it tries at once, then polls

    async def release(self, permit: Permit) -> None:
        await self.inner.release(permit)
        queue = self._queues.get(permit.target)
        if queue:
            queue[0].wake()


class _Waiter:
    """One caller waiting in a ``PermitQueue``; ``wake`` ends its current wait."""

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def take_token(
    bucket: tuple[float, float] | None, now: float, rate_per_s: float, burst: int
) -> tuple[tuple[float, float], float]:
    """One step of a token bucket: refill for the time passed, then take a token if there is one.

    Args:
        bucket: ``(tokens, at)`` from the previous step; None for a new, full bucket.
        now: The current time in the same clock as ``at``.
        rate_per_s: Tokens added per second.
        burst: The bucket's size.

    Returns:
        The new ``(tokens, at)``, and 0.0 when a token was taken or else the seconds until one
        will be there. (The Redis script does the same arithmetic in Lua.)
    """
    tokens, at = bucket if bucket is not None else (float(burst), now)
    # max(): a clock that stepped back must not drain the bucket.
    tokens = min(float(burst), tokens + max(0.0, now - at) * rate_per_s)
    if tokens >= 1.0:
        return (tokens - 1.0, now), 0.0
    return (tokens, now), (1.0 - tokens) / rate_per_s
