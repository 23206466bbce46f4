"""erp_handles: values an ERP adapter keeps per document across retries and restarts (a U8+
OpenAPI ``tradeid``, erp-protocols.md §2 O1), one per (target, document code, name)

Revision ID: 0010_erp_handles
Revises: 0009_stock_and_fingerprints
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_erp_handles"
down_revision: str | None = "0009_stock_and_fingerprints"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erp_handles",
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("code", sa.String(60), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("target", "code", "name", name="pk_erp_handles"),
    )


def downgrade() -> None:
    op.drop_table("erp_handles")
