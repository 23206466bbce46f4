"""Alembic environment: runs migrations through the gateway's own async engine with ``run_sync``.

Called by ``adapters.db.migrate`` (``gateway db upgrade``) with ``sqlalchemy.url`` set, or with a
ready connection in ``config.attributes["connection"]``. There is no ``alembic.ini``: the script
location is resolved from the installed package.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from adapters.db.engine import BEGIN_IMMEDIATE, create_engine
from adapters.db.tables import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    # The gateway's engine: SQLite gets WAL and a real BEGIN IMMEDIATE, so each migration is atomic.
    db = create_engine(url)
    try:
        async with db.engine.connect() as connection:
            connection = await connection.execution_options(**BEGIN_IMMEDIATE)
            await connection.run_sync(_run)
    finally:
        await db.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or pass a connection in config.attributes")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
