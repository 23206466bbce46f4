"""stock and fingerprints: counts reported by the WMS or ERP, the gateway's reservations since them,
and keyed fingerprints of orders for the cross-channel duplicate rule

No foreign key to ``orders``: a reservation or a fingerprint is written in the same unit of work as
its order, but not necessarily after the order's row in every write path (a grouped intake unit is
replayed in the order its writes were recorded), and neither needs the order to be read.

Revision ID: 0009_stock_and_fingerprints
Revises: 0008_retention
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_stock_and_fingerprints"
down_revision: str | None = "0008_retention"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stock_levels",
        sa.Column("sku", sa.String(120), nullable=False),
        sa.Column("warehouse", sa.String(80), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("sku", "warehouse", name="pk_stock_levels"),
    )
    op.create_table(
        "stock_reservations",
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("sku", sa.String(120), nullable=False),
        sa.Column("warehouse", sa.String(80), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("order_id", "sku", "warehouse", name="pk_stock_reservations"),
    )
    # A count's pending total is recomputed from the reservations made after it.
    op.create_index("ix_stock_reservations_sku_warehouse_at", "stock_reservations", ["sku", "warehouse", "at"])
    op.create_table(
        "order_fingerprints",
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("shop_id", sa.String(120), nullable=False),
        sa.Column("platform_order_id", sa.String(120), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", "order_id", name="pk_order_fingerprints"),
    )
    op.create_index("ix_order_fingerprints_fingerprint_at", "order_fingerprints", ["fingerprint", "at"])


def downgrade() -> None:
    op.drop_index("ix_order_fingerprints_fingerprint_at", table_name="order_fingerprints")
    op.drop_table("order_fingerprints")
    op.drop_index("ix_stock_reservations_sku_warehouse_at", table_name="stock_reservations")
    op.drop_table("stock_reservations")
    op.drop_table("stock_levels")
