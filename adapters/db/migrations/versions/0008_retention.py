"""retention: raw payloads by age, for the purge that deletes those past the retention period

Revision ID: 0008_retention
Revises: 0007_reviews
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision: str = "0008_retention"
down_revision: str | None = "0007_reviews"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # gateway.retention deletes the oldest payloads first, a batch at a time; without the index
    # every batch would read the whole table.
    op.create_index("ix_raw_payloads_received_at", "raw_payloads", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_payloads_received_at", table_name="raw_payloads")
