"""Database fixtures shared by every test folder.

``postgres_server`` starts one throwaway PostgreSQL for the session, only when a test asks for it.
``database_url`` gives each test a fresh, migrated database on SQLite and on PostgreSQL;
``storage`` adds the in-memory fakes, for suites every storage implementation must pass.
``log_scan`` (every session) fails the run when a log line holds a clear buyer name or phone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.db.engine import Database, create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from tests.support.logscan import SESSION_LOG, capture_gateway_logs, scan_logs
from tests.support.postgres import PostgresServer, start_postgres
from tests.unit.fakes import FakeUnitOfWorkFactory


@pytest.fixture(scope="session", autouse=True)
def log_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Capture the gateway's log lines for the whole session (masked, as in production), then scan
    them and the logs of the gateway processes the tests started for clear buyer names and phone
    numbers (tests/support/logscan.py). A finding fails the session's last test at teardown."""
    base = tmp_path_factory.getbasetemp()
    with capture_gateway_logs(base / SESSION_LOG):
        yield
    offences = scan_logs(base)
    assert not offences, f"{len(offences)} log lines hold clear buyer data:\n" + "\n".join(offences[:20])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The session server's ``gateway`` database (shared: not migrated, not cleaned)."""
    return postgres_server.url


def _fresh_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database migrated to head: a SQLite file in ``tmp_path``, or a new PostgreSQL database."""
    return _fresh_database(request.param, request, tmp_path)


@dataclass
class Storage:
    """One storage implementation under test."""

    kind: str  # fake | sqlite | postgresql
    uow: Any  # a UnitOfWorkFactory
    url: str | None = None
    db: Database | None = None


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "fake":
        yield Storage(kind="fake", uow=FakeUnitOfWorkFactory())
        return
    url = _fresh_database(request.param, request, tmp_path)
    db = create_engine(url)
    try:
        yield Storage(kind=request.param, uow=SqlUnitOfWorkFactory(db), url=url, db=db)
    finally:
        await db.dispose()
