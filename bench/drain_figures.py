"""Figures of a drain read from outside the gateway: the sandbox's call log (calls at the ERP at
once, calls per document by kind), the database (outbox, attempts, dead letters), Redis and
PostgreSQL counters, and the CPU of a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from drain_config import Sandbox

MAX_LOGGED_CALLS = 20_000  # the sandbox keeps its newest 20,000 calls (adapters/sandbox/state.py)


_SOAP_OP = re.compile(r"<(?:[\w-]+:)?Body\b[^>]*>\s*<(?:[\w-]+:)?([\w-]+)")
_EAI_PROC = re.compile(r"<ufinterface\b[^>]*\bproc=\"(\w+)\"")


def _operation(request: str) -> str:
    """What an XML call asks when its path does not say: the SOAP operation (K3 SOAP's one
    endpoint) or the U8 EAI ``proc`` (add, query)."""
    head = request[:2000]
    m = _SOAP_OP.search(head) or _EAI_PROC.search(head)
    return f" {m.group(1)}" if m else ""


def call_profile(sandbox: Sandbox, system: str, documents: int) -> dict[str, Any]:
    """From the sandbox's call log of ``system`` (all of it: heavy for long runs): the share of the
    drain's time with 0, 1, … calls at the ERP, and the calls per document of each kind (method and
    path) and outcome. ``complete`` is False when the log had already dropped older calls."""
    calls = httpx.get(f"{sandbox.url}/_sandbox/calls", params={"system": system}, timeout=300).json()["calls"]
    events = sorted((parse_at(c["at"]) + end * c["ms"] / 1000, -1 if end else 1) for c in calls for end in (0, 1))
    shares: dict[int, float] = {}
    level, last = 0, events[0][0] if events else 0.0
    for at, step in events:
        shares[level] = shares.get(level, 0.0) + at - last
        level, last = level + step, at
    total = sum(shares.values()) or 1.0
    kinds = Counter(f"{c['method']} {c['path']}{_operation(c['request'])}" for c in calls)
    outcomes = Counter(c["outcome"] for c in calls)
    per_doc = max(documents, 1)
    return {
        "complete": len(calls) < MAX_LOGGED_CALLS,
        "calls": len(calls),
        "in_flight_share": {str(k): round(v / total, 4) for k, v in sorted(shares.items())},
        "per_document": {k: round(v / per_doc, 4) for k, v in kinds.most_common()},
        "outcomes": dict(outcomes.most_common()),
    }


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL with the benchmarks' durable settings when ``servers`` has them (the
    test suite's server runs with fsync off)."""
    try:
        from servers import start_bench_postgres
    except ImportError:
        from tests.support.postgres import start_postgres

        with start_postgres() as server:
            yield server
        return
    server = start_bench_postgres({})
    try:
        yield server
    finally:
        server.stop()


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (Linux /proc; 0 when gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_ops(env: dict[str, str]) -> dict[str, int]:
    """Commands Redis has processed and transactions PostgreSQL has committed so far (arq runs)."""
    out: dict[str, int] = {}
    if env.get("GATEWAY_REDIS_URL"):
        import redis

        with closing(redis.Redis.from_url(env["GATEWAY_REDIS_URL"])) as r:
            out["redis_commands"] = int(r.info("stats")["total_commands_processed"])
            for name, stat in r.info("commandstats").items():
                out[f"redis:{name.removeprefix('cmdstat_')}"] = int(stat["calls"])
    url = env.get("GATEWAY_DATABASE_URL", "")
    if url.startswith("postgresql"):
        import asyncpg

        async def counts() -> tuple[int, int]:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                q = "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()"
                row = await conn.fetchrow(q)
                return int(row[0]), int(row[1])
            finally:
                await conn.close()

        out["pg_commits"], out["pg_sessions"] = asyncio.run(counts())
    return out


def db_figures(url: str) -> dict[str, Any]:
    """Outbox states, delivery attempts and dead letters, straight from the database."""
    queries = {
        "outbox": "SELECT state, COUNT(*) FROM outbox GROUP BY state",
        "attempts": "SELECT COALESCE(SUM(attempts), 0) FROM outbox",
        "dead_letters": "SELECT COUNT(*) FROM dead_letters",
        "orders": "SELECT state, COUNT(*) FROM orders GROUP BY state",
    }
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            rows = {k: conn.execute(q).fetchall() for k, q in queries.items()}
    else:
        import asyncpg

        async def fetch() -> dict[str, Any]:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in queries.items()}
            finally:
                await conn.close()

        rows = asyncio.run(fetch())
    return {
        "outbox": dict(rows["outbox"]),
        "attempts": rows["attempts"][0][0],
        "dead_letters": rows["dead_letters"][0][0],
        "orders": dict(rows["orders"]),
    }


def parse_at(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()
