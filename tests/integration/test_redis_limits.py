"""The shared ERP limits on a real Redis: permits never exceed the concurrency across clients and
processes, a dead worker's permit expires, the token bucket admits about ``rate × seconds + burst``,
and a Redis that goes away gives a retryable error, then works again when it is back.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.redis.connection import arq_settings, describe, redis_client
from adapters.redis.limits import RedisConcurrencyLimiter, RedisRateLimiter
from gateway.limits import InProcessConcurrencyLimiter, InProcessRateLimiter, LimitsConfig, LimitsUnavailableError
from tests.support.redis import start_redis

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]




# ---------------------------------------------------------------- both implementations, one behaviour


@pytest.fixture(params=["in_process", "redis"])
def make_limiters(request: pytest.FixtureRequest) -> Callable[[dict[str, LimitsConfig]], tuple[Any, Any]]:
    if request.param == "in_process":
        return lambda limits: (InProcessConcurrencyLimiter(limits), InProcessRateLimiter(limits))
    client = request.getfixturevalue("redis")
    return lambda limits: (RedisConcurrencyLimiter(client, limits), RedisRateLimiter(client, limits))


async def test_conformance_concurrency_per_target_and_release(make_limiters) -> None:
    conc, _ = make_limiters({"u8": LimitsConfig(concurrency=2)})
    a, b = await conc.acquire("u8"), await conc.acquire("u8")
    assert a is not None and b is not None and a.id != b.id and a.target == "u8"
    assert await conc.acquire("u8") is None
    assert await conc.acquire("k3") is not None  # its own permits, default limits
    await conc.release(a)
    await conc.release(a)  # twice: harmless, frees one slot only
    c = await conc.acquire("u8")
    assert c is not None
    assert await conc.acquire("u8") is None


async def test_conformance_rate_limit_only_when_configured(make_limiters) -> None:
    _, rate = make_limiters({"u8": LimitsConfig(rate_per_s=1, burst=2)})
    assert [await rate.try_acquire("k3") for _ in range(20)] == [0.0] * 20
    assert await rate.try_acquire("u8") == 0.0
    assert await rate.try_acquire("u8") == 0.0
    wait = await rate.try_acquire("u8")
    assert 0.5 < wait <= 1.0


# ---------------------------------------------------------------- many clients, many processes

_RECORD_PEAK = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""
HAMMER_LIMITS = {"u8": LimitsConfig(concurrency=3, permit_ttl_s=10)}


async def hammer(url: str) -> int:
    """Take permits until ``test:stop`` is set; count the holders at once in ``test:peak``.
    Also run in child processes, so it builds everything from the URL."""
    client = redis_client(url)
    limiter = RedisConcurrencyLimiter(client, HAMMER_LIMITS)
    record_peak = client.register_script(_RECORD_PEAK)
    rng = random.Random()
    got = 0
    try:
        await client.incr("test:ready")
        while not await client.exists("test:stop"):
            permit = await limiter.acquire("u8")
            if permit is None:
                await asyncio.sleep(rng.uniform(0, 0.002))
                continue
            got += 1
            # In flight strictly inside the permit: counted after acquire, uncounted before release.
            await record_peak(keys=["test:inflight", "test:peak"])
            await asyncio.sleep(rng.uniform(0.001, 0.008))
            await client.decr("test:inflight")
            await limiter.release(permit)
    finally:
        await client.aclose()
    return got


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def _wait_for(redis: Redis, key: str, value: int) -> None:
    async with asyncio.timeout(30):  # a child process that cannot start fails the test, not hangs it
        while int(await redis.get(key) or 0) < value:  # noqa: ASYNC110 - set by other processes
            await asyncio.sleep(0.02)


async def test_four_clients_and_two_processes_never_hold_more_than_three_permits(redis_url, redis) -> None:
    code = (
        "import asyncio, sys\n"
        "from tests.integration.test_redis_limits import hammer\n"
        "print(asyncio.run(hammer(sys.argv[1])))\n"
    )
    children = [_python(code, redis_url) for _ in range(2)]
    try:
        await _wait_for(redis, "test:ready", 2)
        tasks = [asyncio.create_task(hammer(redis_url)) for _ in range(4)]
        await asyncio.sleep(1.5)
        await redis.set("test:stop", 1)
        in_process = await asyncio.gather(*tasks)
        outputs = [child.communicate(timeout=30) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert int(out.strip()) > 0, "each process got permits"
    assert all(n > 0 for n in in_process)
    assert int(await redis.get("test:peak")) == 3  # reached, never passed
    assert int(await redis.get("test:inflight")) == 0
    assert await redis.zcard("gateway:limits:concurrency:u8") == 0  # every permit given back


async def test_a_sigkilled_workers_permit_frees_itself_after_the_ttl(redis_url, redis) -> None:
    ttl = 1.0
    code = (
        "import asyncio, sys, time\n"
        "from adapters.redis.connection import redis_client\n"
        "from adapters.redis.limits import RedisConcurrencyLimiter\n"
        "from gateway.limits import LimitsConfig\n"
        "async def main():\n"
        "    lim = RedisConcurrencyLimiter(redis_client(sys.argv[1]), {'u8': LimitsConfig(concurrency=1, "
        f"permit_ttl_s={ttl})}})\n"
        "    print((await lim.acquire('u8')).id, flush=True)\n"
        "    time.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    child = _python(code, redis_url)
    try:
        assert child.stdout is not None
        held = await asyncio.to_thread(child.stdout.readline)
        assert held.strip(), child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed_at = time.monotonic()
    finally:
        if child.poll() is None:
            child.kill()
    limiter = RedisConcurrencyLimiter(redis, {"u8": LimitsConfig(concurrency=1, permit_ttl_s=ttl)})
    assert await limiter.acquire("u8") is None  # the dead worker still holds it
    permit = None
    while permit is None and time.monotonic() - killed_at < ttl + 3:
        await asyncio.sleep(0.05)
        permit = await limiter.acquire("u8")
    assert permit is not None, "the permit of a killed worker never expired"


async def test_the_token_bucket_admits_about_rate_times_seconds_plus_burst(redis_url) -> None:
    rate, burst, window = 40.0, 10, 1.5
    limits = {"u8": LimitsConfig(rate_per_s=rate, burst=burst)}
    clients = [redis_client(redis_url) for _ in range(3)]  # three workers, one bucket
    started = time.monotonic()
    ended = started

    async def knock(client: Redis) -> int:
        nonlocal ended
        limiter = RedisRateLimiter(client, limits)
        admitted = 0
        while time.monotonic() - started < window:
            wait = await limiter.try_acquire("u8")
            if wait == 0.0:
                admitted += 1
            else:
                await asyncio.sleep(min(wait, 0.005))
        ended = max(ended, time.monotonic())
        return admitted

    try:
        admitted = sum(await asyncio.gather(*(knock(c) for c in clients)))
    finally:
        for c in clients:
            await c.aclose()
    elapsed = ended - started
    # Never more than the bucket can hold plus what it refilled; not much less, with 3 pollers.
    assert admitted <= burst + rate * elapsed + 1
    assert admitted >= burst + rate * window * 0.8


# ---------------------------------------------------------------- Redis goes away and comes back


async def test_a_redis_restart_gives_a_retryable_error_then_recovers() -> None:
    with start_redis() as server:  # its own server: this test stops it
        client = redis_client(server.url, connect_timeout_s=0.5, socket_timeout_s=1.0)
        limits = {"u8": LimitsConfig(concurrency=2, rate_per_s=100, burst=5)}
        conc, rate = RedisConcurrencyLimiter(client, limits), RedisRateLimiter(client, limits)
        try:
            held = await conc.acquire("u8")
            assert held is not None
            assert await rate.try_acquire("u8") == 0.0

            # Restarted behind the pool's back: stale sockets and an empty script cache are
            # absorbed by the client's one retry and redis-py's reload on NOSCRIPT.
            server.restart()
            assert await conc.acquire("u8") is not None
            assert await rate.try_acquire("u8") == 0.0

            server.stop(kill=True)
            with pytest.raises(LimitsUnavailableError) as caught:
                await conc.acquire("u8")
            assert caught.value.code == "LIMITS_UNAVAILABLE"
            assert f"127.0.0.1:{server.port}" in caught.value.message_en
            with pytest.raises(LimitsUnavailableError):
                await rate.try_acquire("u8")
            await conc.release(held)  # logged, not raised: the permit expires on its own

            server.start()
            assert await conc.acquire("u8") is not None
            assert await rate.try_acquire("u8") == 0.0
        finally:
            await client.aclose()


def test_arq_settings_and_describe_read_the_url_without_leaking_the_password() -> None:
    url = "redis://gw:s3cret@redis.internal:6380/2"
    settings = arq_settings(url)
    assert (settings.host, settings.port, settings.database, settings.password) == ("redis.internal", 6380, 2, "s3cret")
    assert settings.conn_timeout == 2 and settings.conn_retries == 5
    assert describe(url) == "redis://redis.internal:6380/2"
    assert "s3cret" not in describe(url)
