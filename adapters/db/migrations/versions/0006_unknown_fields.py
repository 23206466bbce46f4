"""unknown_fields: source fields no dictionary maps, per platform, with what a suggestion needs

Revision ID: 0006_unknown_fields
Revises: 0005_dictionary_versions
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_unknown_fields"
down_revision: str | None = "0005_dictionary_versions"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "unknown_fields",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("path", sa.String(400), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("sample", sa.Text()),
        sa.Column("numeric", sa.BigInteger(), nullable=False),
        sa.Column("zero", sa.BigInteger(), nullable=False),
        sa.Column("ratio_sum", sa.Float(), nullable=False),
        sa.Column("ratio_sq_sum", sa.Float(), nullable=False),
        sa.Column("equal_to", JSON),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("target", sa.String(40)),
        sa.Column("decided_by", sa.String(120)),
        sa.Column("decided_at", TS),
        sa.Column("draft_id", sa.BigInteger()),
        sa.PrimaryKeyConstraint("id", name="pk_unknown_fields"),
        sa.UniqueConstraint("platform", "path", name="uq_unknown_fields_platform_path"),
    )


def downgrade() -> None:
    op.drop_table("unknown_fields")
