"""initial schema: orders and binder, timeline, payloads, outbox, intercepts, dead letters, audit, keys

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
GENESIS_HASH = "0" * 64

_REFUSE = "audit_log is append-only"


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("shop_id", sa.String(120), nullable=False),
        sa.Column("platform_order_id", sa.String(120), nullable=False),
        sa.Column("platform_version", sa.String(120)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("canonical", JSON, nullable=False),
        sa.Column("mapping_version", sa.String(80), nullable=False),
        sa.Column("rules_version", sa.String(80), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("erp_target", sa.String(80)),
        sa.Column("erp_document_no", sa.String(120)),
        sa.Column("erp_status", sa.String(20)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_orders"),
        sa.UniqueConstraint("id", name="uq_orders_id"),
    )
    op.create_index("ix_orders_platform_order", "orders", ["platform", "platform_order_id"])

    op.create_table(
        "order_bindings",
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("shop_id", sa.String(120), nullable=False),
        sa.Column("platform_order_id", sa.String(120), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("platform_version", sa.String(120)),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("erp_target", sa.String(80)),
        sa.Column("erp_document_no", sa.String(120)),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("platform", "shop_id", "platform_order_id", name="pk_order_bindings"),
        sa.UniqueConstraint("order_id", name="uq_order_bindings_order_id"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_bindings_order_id_orders"),
    )

    op.create_table(
        "order_timeline",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_timeline"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_timeline_order_id_orders"),
    )
    op.create_index("ix_order_timeline_order_id", "order_timeline", ["order_id"])

    op.create_table(
        "raw_payloads",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_raw_payloads"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("available_at", TS, nullable=False),
        sa.Column("lease_owner", sa.String(120)),
        sa.Column("lease_expires_at", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("state_data", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_outbox_order_id_orders"),
    )
    op.create_index("ix_outbox_state_available", "outbox", ["state", "available_at"])
    op.create_index("ix_outbox_order_id", "outbox", ["order_id"])

    op.create_table(
        "intercepts",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(40), nullable=False),
        sa.Column("shop_id", sa.String(120)),
        sa.Column("platform_order_id", sa.String(120)),
        sa.Column("rule_codes", JSON, nullable=False),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("violations", JSON, nullable=False),
        sa.Column("mapping_version", sa.String(80)),
        sa.Column("rules_version", sa.String(80)),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("snapshot", JSON, nullable=False),
        sa.Column("order_id", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_intercepts"),
        sa.UniqueConstraint("id", name="uq_intercepts_id"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_intercepts_order_id_orders"),
    )
    op.create_index("ix_intercepts_created_at", "intercepts", ["created_at"])
    op.create_index("ix_intercepts_platform_shop", "intercepts", ["platform", "shop_id"])

    op.create_table(
        "intercept_rules",
        sa.Column("intercept_id", sa.String(40), nullable=False),
        sa.Column("rule_code", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("intercept_id", "rule_code", name="pk_intercept_rules"),
        sa.ForeignKeyConstraint(
            ["intercept_id"], ["intercepts.id"], name="fk_intercept_rules_intercept_id_intercepts"
        ),
    )
    op.create_index("ix_intercept_rules_rule_code", "intercept_rules", ["rule_code"])

    op.create_table(
        "dead_letters",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("reason_code", sa.String(80), nullable=False),
        sa.Column("message_en", sa.Text(), nullable=False),
        sa.Column("message_zh", sa.Text(), nullable=False),
        sa.Column("partner_message", sa.Text()),
        sa.Column("hint", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("replayed_at", TS),
        sa.PrimaryKeyConstraint("seq", name="pk_dead_letters"),
        sa.UniqueConstraint("id", name="uq_dead_letters_id"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name="fk_dead_letters_outbox_id_outbox"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_dead_letters_order_id_orders"),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("subject_type", sa.String(40), nullable=False),
        sa.Column("subject_id", sa.String(120), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    _create_audit_triggers()


def _create_audit_triggers() -> None:
    """Refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE) of audit entries."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_REFUSE}' USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        for name, event, scope in (
            ("audit_log_no_update", "UPDATE", "ROW"),
            ("audit_log_no_delete", "DELETE", "ROW"),
            ("audit_log_no_truncate", "TRUNCATE", "STATEMENT"),
        ):
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON audit_log "
                f"FOR EACH {scope} EXECUTE FUNCTION audit_log_refuse_change()"
            )
    else:
        for name, event in (("audit_log_no_update", "UPDATE"), ("audit_log_no_delete", "DELETE")):
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log CASCADE")
        op.execute("DROP FUNCTION audit_log_refuse_change()")
    else:
        op.drop_table("audit_log")  # its triggers go with it
    for table in (
        "api_keys",
        "audit_head",
        "dead_letters",
        "intercept_rules",
        "intercepts",
        "outbox",
        "raw_payloads",
        "order_timeline",
        "order_bindings",
        "orders",
    ):
        op.drop_table(table)
