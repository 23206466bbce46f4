"""Fixtures for integration tests: the sandbox partner systems over loopback HTTP (CONTRACT §4), and
one throwaway Redis server for the session (``redis_url`` empties it for each test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from adapters.redis.connection import redis_client
from adapters.sandbox import SandboxState, create_sandbox_app
from gateway.bootstrap import Container, build_container
from gateway.settings import Settings
from tests.support.gateway import RunningGateway, gateway_env, run_gateway
from tests.support.redis import RedisServer, start_redis
from tests.support.servers import RunningSandbox, serve_asgi


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    """One sandbox served by uvicorn for the whole session; ``.url`` and ``.state``."""
    state = SandboxState()
    with serve_asgi(create_sandbox_app(state)) as url:
        running = RunningSandbox(url=url, state=state)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture
def sandbox(sandbox_server: RunningSandbox) -> RunningSandbox:
    """The session sandbox, reset to its seeds (documents, calls, faults, capacity) for this test."""
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def gateway(sandbox: RunningSandbox, tmp_path, monkeypatch) -> Iterator[RunningGateway]:
    """The gateway on a fresh SQLite file, its ERP target pointed at the sandbox; one key per role."""
    with run_gateway(gateway_env(tmp_path, sandbox.url), monkeypatch) as gw:
        yield gw


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied (FLUSHALL) for this test."""
    if not redis_server.running:  # a chaos test stopped it and failed before starting it again
        redis_server.start()
    with redis_sync.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def container(database_url: str) -> AsyncIterator[Container]:
    """A gateway's container on the test module's ``database_url`` (already migrated), no worker."""
    c = await build_container(Settings(database_url=database_url), start_worker=False, migrate=False)
    try:
        yield c
    finally:
        await c.aclose()
