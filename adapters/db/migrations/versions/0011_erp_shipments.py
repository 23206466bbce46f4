"""erp_shipments: shipments read back from the ERP (a U8 发货单, a K3 发货通知 or 销售出库单), one row
per (target, the ERP's shipment number, our sale order it ships: one 发货单 may ship several), each
recorded once with its status event's id; and the index the read-back poller selects delivered
orders of a target by

Revision ID: 0011_erp_shipments
Revises: 0010_erp_handles
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_erp_shipments"
down_revision: str | None = "0010_erp_handles"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erp_shipments",
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("shipment_no", sa.String(120), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("document_code", sa.String(60), nullable=False),
        sa.Column("shipped_at", TS),
        sa.Column("carrier", sa.String(120)),
        sa.Column("waybill_no", sa.String(120)),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("completes_order", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("target", "shipment_no", "document_code", name="pk_erp_shipments"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_erp_shipments_order_id_orders"),
        sa.UniqueConstraint("event_id", name="uq_erp_shipments_event_id"),
    )
    op.create_index("ix_erp_shipments_order_id", "erp_shipments", ["order_id"])
    op.create_index("ix_erp_shipments_recorded_at", "erp_shipments", ["recorded_at"])
    op.create_index("ix_orders_erp_target_state_updated_at", "orders", ["erp_target", "state", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_erp_target_state_updated_at", table_name="orders")
    op.drop_table("erp_shipments")
