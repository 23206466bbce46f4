"""Fixtures for integration tests over loopback HTTP: the sandbox partner systems (CONTRACT §4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.sandbox import SandboxState, create_sandbox_app
from tests.support.gateway import RunningGateway, gateway_env, run_gateway
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
