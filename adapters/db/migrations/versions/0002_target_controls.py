"""target_controls: the stop-line state of each ERP target, shared by every process

Revision ID: 0002_target_controls
Revises: 0001_initial
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_target_controls"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "target_controls",
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("changed_by", sa.String(40), nullable=False),
        sa.Column("armed", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", TS),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("target", name="pk_target_controls"),
    )


def downgrade() -> None:
    op.drop_table("target_controls")
