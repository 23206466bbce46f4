"""End-to-end fixtures: the gateway as a separate process (``gateway serve``), killed and restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import sandbox, sandbox_server  # noqa: F401 - shared fixtures

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """``gateway serve`` in a child process with its own environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(BIN / "gateway"), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"gateway {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
        return done

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "gateway"), "serve", "--port", str(self.port)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing — what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def gateway_process(tmp_path: Path, sandbox) -> Iterator[GatewayProcess]:  # noqa: F811
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_SANDBOX_URL": sandbox.url,
        "GATEWAY_LEASE_SECONDS": "2",
    }
    gw = GatewayProcess(env, tmp_path / "gateway.log")
    try:
        yield gw
    finally:
        gw.stop()
