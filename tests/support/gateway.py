"""Run the gateway for tests: real app, real SQLite file, real HTTP over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from gateway.commands import ROLES, create_key
from gateway.settings import load_settings
from tests.support.servers import serve_asgi

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "mappings" / "samples"


@dataclass
class RunningGateway:
    url: str
    keys: dict[str, str]
    database_url: str
    app: Any

    def client(self, role: str = "platform", **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def order(self, gateway_id: str) -> dict[str, Any]:
        with self.client("wms") as c:
            r = c.get(f"/v1/orders/{gateway_id}")
            r.raise_for_status()
            return r.json()

    def wait_state(self, gateway_id: str, *states: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(
            lambda: (o := self.order(gateway_id))["state"] in states and o, timeout, f"order in {states}"
        )


def gateway_env(tmp_path: Path, sandbox_url: str, **extra: str) -> dict[str, str]:
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_SANDBOX_URL": sandbox_url,
        "GATEWAY_LOG_JSON": "true",
    }
    env.update(extra)
    return env


@contextmanager
def run_gateway(env: dict[str, str], monkeypatch: Any) -> Iterator[RunningGateway]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings()
    keys = {role: asyncio.run(create_key(settings, role=role, label="test")) for role in ROLES}
    app = create_app(settings)
    with serve_asgi(app) as url:
        yield RunningGateway(url=url, keys=keys, database_url=settings.database_url, app=app)
