"""reviews: two-person overrides of intercepts; indexes for the review queue of held orders

Revision ID: 0007_reviews
Revises: 0006_unknown_fields
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_reviews"
down_revision: str | None = "0006_unknown_fields"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

_HELD = sa.text("state = 'held'")


def upgrade() -> None:
    op.create_table(
        "intercept_overrides",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("intercept_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("requester", sa.String(120), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("confirmed_by", sa.String(120)),
        sa.Column("confirmed_at", TS),
        sa.Column("confirm_reason", sa.Text()),
        sa.Column("order_id", sa.String(40)),
        sa.PrimaryKeyConstraint("seq", name="pk_intercept_overrides"),
        sa.UniqueConstraint("intercept_id", name="uq_intercept_overrides_intercept_id"),
        sa.ForeignKeyConstraint(
            ["intercept_id"], ["intercepts.id"], name="fk_intercept_overrides_intercept_id_intercepts"
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_intercept_overrides_order_id_orders"),
    )
    op.create_index("ix_orders_held", "orders", ["seq"], sqlite_where=_HELD, postgresql_where=_HELD)
    op.create_index("ix_intercepts_order_id", "intercepts", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_intercepts_order_id", table_name="intercepts")
    op.drop_index("ix_orders_held", table_name="orders")
    op.drop_table("intercept_overrides")
