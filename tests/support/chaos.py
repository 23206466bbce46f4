"""Harness of the chaos tests (tests/e2e/test_chaos.py): a deployment of real processes
(``gateway serve`` and ``gateway worker``s on one PostgreSQL database and one Redis) that can be
SIGKILLed and restarted, a platform client that resubmits what failed as a real platform does,
the deployment's configuration file, and read-only queries of its database.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec

from tests.e2e.conftest import BIN, GatewayProcess
from tests.support.gateway import SAMPLES

TARGET = "u8-demo"  # the demo configuration routes every shop here
SAMPLE = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()

_T = TypeVar("_T")


def wait_for(predicate: Callable[[], _T], timeout: float, what: str | Callable[[], str], interval: float = 0.2) -> _T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.
    ``what`` names the condition; a callable is asked only on failure (for diagnostics)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------- orders


def taobao_orders(count: int, *, start: int = 0) -> list[tuple[str, bytes]]:
    """``count`` copies of Taobao sample 02, each its own trade (tid) with its own lines (oid):
    ``(tid, body)`` pairs."""
    out = []
    for n in range(start, start + count):
        payload = msgspec.json.decode(SAMPLE)
        trade = payload["trade_fullinfo_get_response"]["trade"]
        trade["tid"] = 6_000_000_000_000_000_000 + n
        trade["tid_str"] = str(trade["tid"])
        for k, line in enumerate(trade["orders"]["order"]):
            line["oid"] = 7_000_000_000_000_000_000 + n * 10 + k
            line["oid_str"] = str(line["oid"])
        out.append((trade["tid_str"], msgspec.json.encode(payload)))
    return out


@dataclass
class Accepted:
    tid: str
    gateway_id: str
    status: int  # 202 new, 200 a repeat of an order the gateway already had
    requests: int  # 1 unless resubmitted


class Platform:
    """A platform pushing orders to ``POST /v1/orders/taobao``. An order whose request failed in
    transport (refused, reset, timed out) or with a 5xx is pushed again until it is accepted: a
    202, or a 200 for a repeat of an order the gateway had already taken. Any other answer is
    kept in ``refused`` for the test to report."""

    def __init__(self, url: str, key: str, *, give_up_s: float = 150.0) -> None:
        self.url = url
        self.key = key
        self.give_up_s = give_up_s
        self.accepted = 0  # progress, read by other threads
        self.resubmitted = 0
        self.refused: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            headers = {"Authorization": f"Bearer {self.key}"}
            client = self._local.client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        return client

    def push(self, tid: str, body: bytes) -> Accepted | None:
        deadline = time.monotonic() + self.give_up_s
        requests = 0
        while True:
            requests += 1
            try:
                r = self._client().post("/v1/orders/taobao", content=body)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code in (200, 202):
                with self._lock:
                    self.accepted += 1
                    self.resubmitted += requests - 1
                return Accepted(tid, r.json()["id"], r.status_code, requests)
            if r is not None and r.status_code < 500:
                with self._lock:
                    self.refused.append((tid, r.status_code, r.text[:500]))
                return None
            if time.monotonic() > deadline:
                with self._lock:
                    self.refused.append((tid, r.status_code if r is not None else 0, "gave up resubmitting"))
                return None
            time.sleep(min(0.05 * requests, 0.5))  # the gateway is restarting: back off a little

    def push_all(self, orders: list[tuple[str, bytes]], threads: int = 8) -> list[Accepted]:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda o: self.push(*o), orders))
        return [a for a in results if a is not None]


# ----------------------------------------------------------------------------------- configuration


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() and key.isascii() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_table(table: dict[str, Any], prefix: str, out: list[str]) -> None:
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and (len(tables) < len(table) or not table):  # a table holding only tables needs no header
        out.append(f"\n[{prefix}]")
    out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in tables)
    for key, sub in tables.items():
        _toml_table(sub, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), out)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def write_config(path: Path, target: dict[str, Any]) -> Path:
    """The bundled demo configuration with ``target`` merged into its ERP target's table (e.g.
    ``{"limits": {"concurrency": 4}, "circuit": {...}}``), written to ``path`` for GATEWAY_CONFIG."""
    demo = tomllib.loads(resources.files("gateway").joinpath("demo_config.toml").read_text(encoding="utf-8"))
    demo["targets"][TARGET] = _merge(demo["targets"][TARGET], target)
    lines: list[str] = []
    _toml_table(demo, "", lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- processes


class WorkerProcess:
    """One ``gateway worker`` (arq) process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "gateway"), "worker"], env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, leases and permits left behind, as in a crash."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Deployment:
    """``gateway serve`` (API and outbox relay) plus ``workers`` arq workers, all sharing one
    database, one Redis and one configuration; ``kill``/``restart`` by name (``serve``,
    ``worker0``, ``worker1``, ...)."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *, workers: int = 2) -> None:
        self.serve = GatewayProcess(env, tmp_path / "serve.log")
        self.workers = {
            f"worker{n}": WorkerProcess(self.serve.env, tmp_path / f"worker{n}.log") for n in range(workers)
        }
        self.kills: list[str] = []

    @property
    def url(self) -> str:
        return self.serve.url

    def prepare(self) -> str:
        """Migrate the database; return a new platform API key."""
        self.serve.cli("db", "upgrade")
        return self.serve.cli("keys", "create", "--role", "platform").stdout.strip()

    def start(self) -> None:
        self.serve.start()
        for worker in self.workers.values():
            worker.start()

    def kill(self, name: str) -> None:
        self.kills.append(name)
        if name == "serve":
            self.serve.kill()
        else:
            self.workers[name].kill()

    def restart(self, name: str) -> None:
        """Start ``name`` again after a kill; the API (same port) is ready when this returns."""
        if name == "serve":
            self.serve.start()
        else:
            self.workers[name].start()

    def alive(self) -> dict[str, bool]:
        serve = self.serve.proc is not None and self.serve.proc.poll() is None
        return {"serve": serve} | {name: w.alive for name, w in self.workers.items()}

    def check_alive(self) -> None:
        """Fail at once, with the logs, when a process ended that nobody killed."""
        alive = self.alive()
        assert all(alive.values()), f"a process ended on its own: {alive}\n{self.log_tails(4000)}"

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.serve.stop()

    def log_tails(self, chars: int = 1500) -> str:
        parts = []
        for log in [self.serve.log, *(w.log for w in self.workers.values())]:
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {log.name}\n{text[-chars:]}")
        return "\n".join(parts)


# -------------------------------------------------------------------------------------- database


class Database:
    """Read-only SQL against the deployment's PostgreSQL database, from synchronous test code."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def scalar(self, sql: str, *args: Any) -> Any:
        rows = self.fetch(sql, *args)
        return rows[0][0] if rows else None

    def delivered(self) -> int:
        return self.scalar("SELECT count(*) FROM orders WHERE state = 'delivered'")

    def orders(self) -> dict[str, asyncpg.Record]:
        """Every order by platform order id (the Taobao tid)."""
        rows = self.fetch("SELECT id, platform_order_id, state, erp_document_no FROM orders")
        return {r["platform_order_id"]: r for r in rows}

    def outbox_summary(self) -> str:
        """The outbox by state, for a failure message: rows, tokens, attempts, due times, errors."""
        rows = self.fetch(
            "SELECT state, count(*) AS n, max(token) AS max_token, max(attempts) AS max_attempts,"
            " min(available_at) - now() AS first_due_in, min(lease_expires_at) - now() AS first_lease_ends_in,"
            " (array_agg(last_error) FILTER (WHERE last_error IS NOT NULL))[1] AS an_error"
            " FROM outbox GROUP BY state"
        )
        return "outbox: " + "; ".join(str(dict(r)) for r in rows)

    def count_by(self, sql: str) -> dict[Any, int]:
        """``{key: n}`` from a ``SELECT key, count(*) ... GROUP BY key`` query."""
        return {r[0]: r[1] for r in self.fetch(sql)}
