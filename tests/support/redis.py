"""A throwaway Redis server for the tests: ``redis-server`` on a free loopback port, no persistence,
its working folder in a temporary directory, removed afterwards.

``restart()`` stops the server and starts a new one on the same port (empty, like a Redis without
persistence after a crash), for the "Redis restarted mid-run" tests. A missing binary is an
error, not a skip: ``make test`` installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PATH = "/usr/bin/redis-server"


class RedisNotInstalled(RuntimeError):
    pass


def find_redis_server() -> str:
    """The ``redis-server`` binary: PATH first, then Debian's /usr/bin."""
    found = shutil.which("redis-server")
    if found is None and os.access(DEBIAN_PATH, os.X_OK):
        found = DEBIAN_PATH
    if found is None:
        raise RedisNotInstalled(
            "redis-server not found on PATH or in /usr/bin. "
            "Run `make test`, which installs it, or `apt-get install redis-server`."
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    binary: str
    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start on ``port`` (a free one when 0) and wait until it answers PING."""
        fixed = self.port != 0
        # A free port may be taken by another process before the server binds it: try others.
        # A fixed port (a restart) gets one more try in case the old socket lingers.
        attempts = 2 if fixed else 3
        for attempt in range(attempts):
            if not fixed:
                self.port = _free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.root),
                    "--logfile", str(self.root / "redis.log"),
                    "--daemonize", "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.root,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if _pong(self.port):
                    return
                time.sleep(0.02)
            self.stop(kill=True)
            if attempt == attempts - 1:
                log = self.root / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM and wait, or SIGKILL (a crash) with ``kill``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, *, kill: bool = True, down_s: float = 0.0) -> None:
        """Stop (SIGKILL by default, as a crash) and start again on the same port, empty."""
        self.stop(kill=kill)
        if down_s:
            time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def start_redis() -> Iterator[RedisServer]:
    """A running throwaway Redis; stopped and its folder removed on exit."""
    server = RedisServer(binary=find_redis_server(), root=Path(tempfile.mkdtemp(prefix="gateway-redis-")))
    try:
        server.start()
        yield server
    finally:
        server.close()
