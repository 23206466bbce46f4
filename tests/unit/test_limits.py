"""The in-process ERP limits with a fake clock: concurrency permits with a lease, and the token
bucket. The Redis implementations pass the same checks in tests/integration/test_redis_limits.py."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import RetryableError
from gateway.limits import (
    InProcessConcurrencyLimiter,
    InProcessRateLimiter,
    LimitsConfig,
    LimitsUnavailableError,
    take_token,
)
from tests.support.clock import FakeMonotonic

FakeClock = FakeMonotonic


@pytest.fixture
def clock() -> FakeClock:
    return FakeMonotonic(50.0)


def test_config_defaults_and_validation() -> None:
    cfg = LimitsConfig()
    assert (cfg.concurrency, cfg.rate_per_s, cfg.burst, cfg.permit_ttl_s) == (2, None, 1, 60.0)
    for bad in ({"concurrency": 0}, {"rate_per_s": 0}, {"burst": 0}, {"permit_ttl_s": -1}, {"rate": 3}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, LimitsConfig)


def test_unavailable_is_retryable_with_its_own_code() -> None:
    err = LimitsUnavailableError()
    assert isinstance(err, RetryableError)
    assert err.code == "LIMITS_UNAVAILABLE"
    assert err.message_zh and err.message_en


async def test_concurrency_gives_at_most_n_permits_per_target(clock) -> None:
    lim = InProcessConcurrencyLimiter({"u8": LimitsConfig(concurrency=3)}, clock=clock)
    permits = [await lim.acquire("u8") for _ in range(3)]
    assert all(permits)
    assert len({p.id for p in permits}) == 3
    assert await lim.acquire("u8") is None
    assert lim.in_use("u8") == 3
    # another target has its own permits (the default limits: 2)
    assert await lim.acquire("k3") is not None
    assert await lim.acquire("k3") is not None
    assert await lim.acquire("k3") is None


async def test_release_frees_a_slot_and_double_release_is_harmless(clock) -> None:
    lim = InProcessConcurrencyLimiter({"u8": LimitsConfig(concurrency=1)}, clock=clock)
    first = await lim.acquire("u8")
    assert first is not None
    await lim.release(first)
    await lim.release(first)
    second = await lim.acquire("u8")
    assert second is not None
    assert await lim.acquire("u8") is None  # the double release did not free a second slot


async def test_a_permit_never_released_expires_after_its_ttl(clock) -> None:
    lim = InProcessConcurrencyLimiter({"u8": LimitsConfig(concurrency=1, permit_ttl_s=30)}, clock=clock)
    lost = await lim.acquire("u8")
    assert lost is not None
    assert lost.expires_at == pytest.approx(clock.t + 30)
    clock.advance(29.9)
    assert await lim.acquire("u8") is None
    clock.advance(0.1)
    fresh = await lim.acquire("u8")
    assert fresh is not None
    await lim.release(lost)  # the late release of the expired permit must not free the new one
    assert await lim.acquire("u8") is None


async def test_no_rate_limit_unless_configured(clock) -> None:
    lim = InProcessRateLimiter(clock=clock)
    assert [await lim.try_acquire("u8") for _ in range(100)] == [0.0] * 100


async def test_token_bucket_spends_the_burst_then_paces(clock) -> None:
    lim = InProcessRateLimiter({"u8": LimitsConfig(rate_per_s=4, burst=3)}, clock=clock)
    assert [await lim.try_acquire("u8") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await lim.try_acquire("u8")
    assert wait == pytest.approx(0.25)
    clock.advance(0.1)
    assert await lim.try_acquire("u8") == pytest.approx(0.15)  # a refusal takes nothing
    clock.advance(0.15)
    assert await lim.try_acquire("u8") == 0.0
    assert await lim.try_acquire("u8") == pytest.approx(0.25)


async def test_token_bucket_admits_rate_times_time_plus_burst(clock) -> None:
    lim = InProcessRateLimiter({"u8": LimitsConfig(rate_per_s=10, burst=5)}, clock=clock)
    admitted = 0
    for _ in range(1000):  # 10 s of callers knocking every 10 ms
        if await lim.try_acquire("u8") == 0.0:
            admitted += 1
        clock.advance(0.01)
    assert 10 * 10 + 5 - 1 <= admitted <= 10 * 10 + 5


async def test_a_quiet_spell_saves_up_no_more_than_the_burst(clock) -> None:
    lim = InProcessRateLimiter({"u8": LimitsConfig(rate_per_s=1, burst=2)}, clock=clock)
    await lim.try_acquire("u8")
    clock.advance(3600)
    assert [await lim.try_acquire("u8") == 0.0 for _ in range(3)] == [True, True, False]


def test_take_token_survives_a_clock_that_steps_back() -> None:
    (tokens, at), wait = take_token((0.5, 100.0), 90.0, rate_per_s=2, burst=3)
    assert (tokens, at, wait) == (0.5, 90.0, pytest.approx(0.25))
