"""Serve ASGI apps on loopback for tests: a real uvicorn in a background thread.

Used for the sandbox partner systems (CONTRACT §4) and for the gateway itself, so tests talk
real HTTP (httpx) to real sockets instead of an in-process transport.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn


@contextmanager
def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
    graceful_shutdown: float = 5.0,
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread with its own event loop; yield its base URL.

    The socket is bound here (port 0 = any free port) and handed to uvicorn, so there is no
    race for the port between choosing it and serving it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=bound_host,
        port=bound_port,
        log_level="warning",
        log_config=None,  # as `gateway serve`: its lines reach the root handlers, masked (tests/support/logscan.py)
        lifespan="on",
        timeout_graceful_shutdown=graceful_shutdown,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # SystemExit on a failed lifespan startup, too
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn:{bound_port}", daemon=True)
    thread.start()
    base_url = f"http://{bound_host}:{bound_port}"
    try:
        _wait_started(server, thread, failure, startup_timeout)
        _wait_accepting(bound_host, bound_port, startup_timeout)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(graceful_shutdown + 5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        sock.close()


def _wait_started(
    server: uvicorn.Server, thread: threading.Thread, failure: list[BaseException], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if failure or not thread.is_alive():
            reason = repr(failure[0]) if failure else "the server thread ended"
            raise RuntimeError(f"uvicorn did not start: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not start within {timeout}s")
        time.sleep(0.01)


def _wait_accepting(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass
class RunningSandbox:
    """The served sandbox: its base URL and the live ``SandboxState`` behind it.

    Prefer the HTTP control plane (the helpers below) in tests: ``state`` is owned by the
    server's event loop thread, so read it only while no request is running.
    """

    url: str
    state: Any
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=10)

    def close(self) -> None:
        self._client.close()

    def reset(self) -> None:
        self._client.post("/_sandbox/reset").raise_for_status()

    def documents(self, system: str) -> list[dict[str, Any]]:
        response = self._client.get(f"/_sandbox/{system}/documents")
        response.raise_for_status()
        return response.json()["documents"]

    def calls(self, system: str | None = None) -> list[dict[str, Any]]:
        params = {"system": system} if system else {}
        response = self._client.get("/_sandbox/calls", params=params)
        response.raise_for_status()
        return response.json()["calls"]

    def fault(self, system: str, mode: str, rate: float = 1.0, **extra: Any) -> None:
        body = {"system": system, "mode": mode, "rate": rate, **extra}
        self._client.post("/_sandbox/faults", json=body).raise_for_status()

    def clear_faults(self, system: str | None = None) -> None:
        params = {"system": system} if system else {}
        self._client.delete("/_sandbox/faults", params=params).raise_for_status()

    def capacity(self, system: str | None = None, **limits: Any) -> dict[str, Any]:
        """Set ``concurrency``/``service_ms`` when given; return the capacity view."""
        if limits:
            self._client.post("/_sandbox/capacity", json={"system": system, **limits}).raise_for_status()
        view = self._client.get("/_sandbox/capacity").json()
        return view.get(system, {}) if system else view
