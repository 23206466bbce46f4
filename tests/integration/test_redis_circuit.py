"""The circuit breaker shared through a real Redis: two boards (two worker processes) count
failures together, see one state, let one probe through between them, and close together; a probe
whose worker died is forgotten; a Redis that is away refuses calls with a retryable error.

The same scenario runs on the in-process ``Circuits`` so both implementations of the port keep
one behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from adapters.redis.circuit import RedisCircuits
from adapters.redis.connection import redis_client
from gateway.circuit import CircuitBoard, CircuitConfig, Circuits
from gateway.errors import RetryableError
from gateway.limits import LimitsUnavailableError
from tests.support.redis import RedisServer

pytestmark = pytest.mark.integration

T = "u8-a"
CFG = CircuitConfig(failure_threshold=3, open_seconds=0.4, half_open_probes=1, probe_timeout_s=0.6)


async def _scenario(a: CircuitBoard, b: CircuitBoard, changes: list[tuple[str, str, str]]) -> None:
    # Closed: everything goes; failures from both processes count towards one threshold.
    for board in (a, b):
        assert (await board.allow(T)).allowed
    await a.record(T, await a.allow(T), "failure")
    await b.record(T, await b.allow(T), "failure")
    await a.record(T, await a.allow(T), "success")  # a success anywhere resets the count
    await a.record(T, await a.allow(T), "failure")
    await b.record(T, await b.allow(T), "failure")
    assert await b.read([T]) == {T: "closed"}
    await a.record(T, await a.allow(T), "failure")  # the third in a row
    assert await b.read([T]) == {T: "open"}
    refused = await b.allow(T)
    assert not refused.allowed and 0 < refused.retry_after <= CFG.open_seconds
    await asyncio.sleep(CFG.open_seconds + 0.05)
    # Half-open: one probe between both processes.
    probe = await a.allow(T)
    assert probe.allowed and probe.probe
    assert not (await b.allow(T)).allowed
    await b.record(T, probe, "failure")  # the probe failed (reported by whoever ran it): open again
    assert await a.read([T]) == {T: "open"}
    await asyncio.sleep(CFG.open_seconds + 0.05)
    probe = await b.allow(T)
    assert probe.allowed
    await b.record(T, probe, "cancelled")  # no call made after all: the slot is free again
    probe = await a.allow(T)
    assert probe.allowed
    await a.record(T, probe, "success")
    assert await a.read([T]) == await b.read([T]) == {T: "closed"}
    assert ("u8-a", "closed", "open") in changes and ("u8-a", "half_open", "closed") in changes


def _recorder() -> tuple[list[tuple[str, str, str]], Callable[[str, str, str], None]]:
    changes: list[tuple[str, str, str]] = []
    return changes, lambda t, old, new: changes.append((t, old, new))


async def test_two_processes_share_one_circuit_in_redis(redis: Redis, redis_url: str) -> None:
    changes, hook = _recorder()
    other = redis_client(redis_url)
    try:
        a = RedisCircuits(redis, {T: CFG}, on_change=hook)
        b = RedisCircuits(other, {T: CFG}, on_change=hook)
        await _scenario(a, b, changes)
    finally:
        await other.aclose()


async def test_the_in_process_board_behaves_the_same() -> None:
    changes, hook = _recorder()
    board = Circuits({T: CFG}, on_change=hook)
    await _scenario(board, board, changes)  # one process: both "workers" share it by construction


async def test_a_probe_whose_worker_died_is_forgotten(redis: Redis) -> None:
    board = RedisCircuits(redis, {T: CFG})
    for _ in range(CFG.failure_threshold):
        await board.record(T, await board.allow(T), "failure")
    await asyncio.sleep(CFG.open_seconds + 0.05)
    assert (await board.allow(T)).allowed  # a probe that is never reported: its worker was killed
    refused = await board.allow(T)
    assert not refused.allowed and refused.retry_after <= CFG.probe_timeout_s
    await asyncio.sleep(CFG.probe_timeout_s + 0.05)
    assert (await board.allow(T)).allowed  # forgotten: the next probe may go


async def test_targets_are_independent_and_keys_are_prefixed(redis: Redis) -> None:
    a = RedisCircuits(redis, {T: CFG}, prefix="gw-a")
    b = RedisCircuits(redis, {T: CFG}, prefix="gw-b")
    for _ in range(CFG.failure_threshold):
        await a.record(T, await a.allow(T), "failure")
    assert await a.read([T, "u8-b"]) == {T: "open", "u8-b": "closed"}
    assert await b.read([T]) == {T: "closed"}  # another gateway on the same Redis


async def test_a_redis_that_is_away_refuses_calls_with_a_retryable_error(redis_server: RedisServer) -> None:
    client = redis_client(redis_server.url, connect_timeout_s=0.5, socket_timeout_s=0.5, retries=0)
    board = RedisCircuits(client, {T: CFG})
    try:
        assert (await board.allow(T)).allowed
        redis_server.stop(kill=True)
        with pytest.raises(LimitsUnavailableError) as caught:
            await board.allow(T)
        assert isinstance(caught.value, RetryableError) and "GATEWAY_REDIS_URL" in (caught.value.hint or "")
        await board.record(T, await Circuits().allow(T), "failure")  # logs, does not raise
        redis_server.start()
        assert (await board.allow(T)).allowed
    finally:
        if not redis_server.running:
            redis_server.start()
        await client.aclose()
