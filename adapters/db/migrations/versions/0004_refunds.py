"""refunds: every platform refund received, kept until (and after) it is applied to its order

A refund can arrive before its order; it waits here as ``pending`` and is applied when the order
is taken in. One row per (platform, refund_id); an older ``platform_version`` never overwrites a
newer one.

Revision ID: 0004_refunds
Revises: 0003_outbox_unfinished_index
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_refunds"
down_revision: str | None = "0003_outbox_unfinished_index"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("refund_id", sa.String(120), nullable=False),
        sa.Column("platform_order_id", sa.String(120), nullable=False),
        sa.Column("order_id", sa.String(40)),
        sa.Column("platform_version", sa.String(120)),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("canonical", JSON, nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("applied_at", TS),
        sa.PrimaryKeyConstraint("seq", name="pk_refunds"),
        sa.UniqueConstraint("platform", "refund_id", name="uq_refunds_platform_refund_id"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_refunds_order_id_orders"),
    )
    op.create_index("ix_refunds_platform_order", "refunds", ["platform", "platform_order_id"])


def downgrade() -> None:
    op.drop_index("ix_refunds_platform_order", table_name="refunds")
    op.drop_table("refunds")
