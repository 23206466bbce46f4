"""outbox: a partial index over unfinished rows (order_id, id WHERE state IN pending, leased)

Every claim checks that no older row of the same order is still in flight. Done rows pile up
without end; unfinished ones stay few. Over only those, the check is one small index probe
whatever the planner's statistics say — PostgreSQL's estimate after a quiet spell (almost every
row done) otherwise picks a plan that scans the whole outbox when a backlog arrives.

Revision ID: 0003_outbox_unfinished_index
Revises: 0002_target_controls
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outbox_unfinished_index"
down_revision: str | None = "0002_target_controls"
branch_labels: str | None = None
depends_on: str | None = None

_WHERE = sa.text("state IN ('pending', 'leased')")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_unfinished",
        "outbox",
        ["order_id", "id"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unfinished", table_name="outbox")
