"""Schema migrations (Alembic), run from code: ``gateway db upgrade`` and the test fixtures.

The migration scripts ship inside the package (``adapters/db/migrations``), so this works from an
installed wheel as well as from the repository; there is no ``alembic.ini``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from adapters.db.engine import create_engine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

T = TypeVar("T")


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` for ``url`` with the packaged script location."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``.

    Blocking; callable from inside a running event loop too (it then runs on a helper thread,
    because the migration environment drives its own loop).
    """
    _outside_loop(lambda: command.upgrade(alembic_config(url), revision))


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before the first migration."""

    async def read() -> str | None:
        db = create_engine(url)
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        finally:
            await db.dispose()

    return _outside_loop(lambda: asyncio.run(read()))


def _outside_loop(fn: Callable[[], T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="gateway-migrate")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
