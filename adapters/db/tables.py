"""The gateway's tables as SQLAlchemy Core objects, the one description the repositories query.

The schema itself is created by the Alembic migrations in ``migrations/versions``; a test compares
the two so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the storage ports take timezone-aware UTC times")
    return value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """``value`` as ``UTCDateTime`` stores it on SQLite: naive UTC text with microseconds, which
    sorts and compares like the times themselves (for statements run on the plain driver)."""
    return as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out on every engine.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    text (which also sorts and compares correctly) and given back their ``UTC`` on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> Any:
    return JSON().with_variant(JSONB(), "postgresql")


# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (its autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Deterministic constraint names, so the migrations can name what they create and drop.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

orders = Table(
    "orders",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("platform", String(40), nullable=False),
    Column("shop_id", String(120), nullable=False),
    Column("platform_order_id", String(120), nullable=False),
    Column("platform_version", String(120)),
    Column("state", String(20), nullable=False),
    Column("canonical", _json(), nullable=False),
    Column("mapping_version", String(80), nullable=False),
    Column("rules_version", String(80), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("erp_target", String(80)),
    Column("erp_document_no", String(120)),
    Column("erp_status", String(20)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_orders_platform_order", "platform", "platform_order_id"),
    # The shipment read-back's selection: delivered orders of one target, changed since a cutoff.
    Index("ix_orders_erp_target_state_updated_at", "erp_target", "state", "updated_at"),
)

order_bindings = Table(
    "order_bindings",
    metadata,
    Column("platform", String(40), primary_key=True),
    Column("shop_id", String(120), primary_key=True),
    Column("platform_order_id", String(120), primary_key=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False, unique=True),
    Column("platform_version", String(120)),
    Column("payload_sha256", String(64), nullable=False),
    Column("erp_target", String(80)),
    Column("erp_document_no", String(120)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

order_timeline = Table(
    "order_timeline",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(60), nullable=False),
    Column("detail", _json(), nullable=False),
    Index("ix_order_timeline_order_id", "order_id"),
)

raw_payloads = Table(
    "raw_payloads",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("body", LargeBinary, nullable=False),  # zlib-compressed
    Column("size", Integer, nullable=False),  # uncompressed bytes
    Column("received_at", UTCDateTime(), nullable=False),  # first received
    # The retention purge (gateway.retention) reads the oldest first, batch by batch.
    Index("ix_raw_payloads_received_at", "received_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False),
    Column("target", String(80), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(120)),
    Column("lease_expires_at", UTCDateTime()),
    Column("last_error", Text),
    Column("state_data", _json(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_outbox_state_available", "state", "available_at"),
    Index("ix_outbox_order_id", "order_id"),
    # Only unfinished rows, which stay few however long the outbox grows: the "no older row of
    # this order in flight" probe of every claim, and the backlog per target, read this index
    # whatever the planner's statistics say about how many rows are done.
    Index(
        "ix_outbox_unfinished",
        "order_id",
        "id",
        sqlite_where=text("state IN ('pending', 'leased')"),
        postgresql_where=text("state IN ('pending', 'leased')"),
    ),
)

intercepts = Table(
    "intercepts",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("platform", String(40), nullable=False),
    Column("shop_id", String(120)),
    Column("platform_order_id", String(120)),
    Column("rule_codes", _json(), nullable=False),
    Column("verdict", String(10), nullable=False),
    Column("violations", _json(), nullable=False),
    Column("mapping_version", String(80)),
    Column("rules_version", String(80)),
    Column("payload_sha256", String(64), nullable=False),
    Column("snapshot", _json(), nullable=False),
    Column("order_id", String(40), ForeignKey("orders.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_intercepts_created_at", "created_at"),
    Index("ix_intercepts_platform_shop", "platform", "shop_id"),
)

intercept_rules = Table(
    "intercept_rules",
    metadata,
    Column("intercept_id", String(40), ForeignKey("intercepts.id"), primary_key=True),
    Column("rule_code", String(80), primary_key=True),
    Index("ix_intercept_rules_rule_code", "rule_code"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("outbox_id", BigInteger, ForeignKey("outbox.id"), nullable=False),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False),
    Column("target", String(80), nullable=False),
    Column("reason_code", String(80), nullable=False),
    Column("message_en", Text, nullable=False),
    Column("message_zh", Text, nullable=False),
    Column("partner_message", Text),
    Column("hint", Text),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("replayed_at", UTCDateTime()),
)

# Append-only: migrations add triggers refusing UPDATE and DELETE. ``at`` and ``data`` are kept as
# the exact text that was hashed.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("at", Text, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(80), nullable=False),
    Column("subject_type", String(40), nullable=False),
    Column("subject_id", String(120), nullable=False),
    Column("data", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("label", String(200)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

# Stop the line: one row per ERP target once its line was stopped or resumed (gateway.stopline).
target_controls = Table(
    "target_controls",
    metadata,
    Column("target", String(80), primary_key=True),
    Column("state", String(10), nullable=False),
    Column("changed_by", String(40), nullable=False),
    Column("armed", Integer, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("changed_at", UTCDateTime()),
    Column("data", _json(), nullable=False),
)

# Platform refunds (gateway.refund_intake): one row per (platform, refund_id), its newest version.
# ``pending`` until its order is stored (``order_id`` is then the gateway order it was applied to);
# the raw payload is in ``raw_payloads`` under ``payload_sha256``.
refunds = Table(
    "refunds",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("platform", String(40), nullable=False),
    Column("refund_id", String(120), nullable=False),
    Column("platform_order_id", String(120), nullable=False),
    Column("order_id", String(40), ForeignKey("orders.id")),
    Column("platform_version", String(120)),
    Column("state", String(10), nullable=False),
    Column("canonical", _json(), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("applied_at", UTCDateTime()),
    UniqueConstraint("platform", "refund_id"),
    Index("ix_refunds_platform_order", "platform", "platform_order_id"),
)

# Dictionary versions (gateway.governance): every TOML text ever proposed, seeded or published, and
# its state. At most one version of a name is published (the partial unique index says so too).
dictionary_versions = Table(
    "dictionary_versions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(80), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("platform", String(40)),
    Column("version", String(40), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("proposed_by", String(120), nullable=False),
    Column("proposed_at", UTCDateTime(), nullable=False),
    Column("approved_by", String(120)),
    Column("approved_at", UTCDateTime()),
    Column("published_by", String(120)),
    Column("published_at", UTCDateTime()),
    Column("superseded_at", UTCDateTime()),
    Column("rejected_by", String(120)),
    Column("rejected_at", UTCDateTime()),
    Column("base_id", BigInteger),
    # SQL NULL, not JSON null, until a dry run: listings ask ``dry_run IS NOT NULL``.
    Column("dry_run", JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")),
    Column("note", Text),
    Index("ix_dictionary_versions_name_digest", "name", "digest"),
    Index(
        "ux_dictionary_versions_published",
        "name",
        unique=True,
        sqlite_where=text("state = 'published'"),
        postgresql_where=text("state = 'published'"),
    ),
)

# One row: the publication generation. Every publish and rollback adds one in the same transaction;
# each process reads it about once a second and loads the published versions when it moved.
dictionary_publication = Table(
    "dictionary_publication",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
    Column("changed_by", String(120), nullable=False),
    Column("changed_at", UTCDateTime()),
    CheckConstraint("id = 1", name="single_row"),
)

# Source fields no dictionary maps, per platform: counts, first and last sighting, a masked
# sample, and the numbers behind a suggested target (gateway/unknown_fields.py). IT confirms or
# dismisses each; a confirmation records the dictionary draft it created.
unknown_fields = Table(
    "unknown_fields",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("platform", String(40), nullable=False),
    Column("path", String(400), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("sample", Text),
    Column("numeric", BigInteger, nullable=False),
    Column("zero", BigInteger, nullable=False),
    Column("ratio_sum", Float, nullable=False),
    Column("ratio_sq_sum", Float, nullable=False),
    Column("equal_to", _json()),
    Column("state", String(20), nullable=False),  # new | confirmed | dismissed
    Column("target", String(40)),
    Column("decided_by", String(120)),
    Column("decided_at", UTCDateTime()),
    Column("draft_id", BigInteger),
    UniqueConstraint("platform", "path"),
)

# Manual review (gateway/review.py). An intercepted order goes through only when two people agree:
# the first asks (``requested``), a second, different person confirms (``confirmed``) and the order
# is stored; one row per intercept. Held orders are decided on the order itself (its state).
intercept_overrides = Table(
    "intercept_overrides",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("intercept_id", String(40), ForeignKey("intercepts.id"), nullable=False, unique=True),
    Column("state", String(12), nullable=False),  # requested | confirmed
    Column("rules", _json(), nullable=False),
    Column("requested_by", String(120), nullable=False),
    Column("requester", String(120), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("confirmed_by", String(120)),
    Column("confirmed_at", UTCDateTime()),
    Column("confirm_reason", Text),
    Column("order_id", String(40), ForeignKey("orders.id")),
)

# The review queue reads the held orders (few, however many orders there are) oldest first, and
# each one's newest hold intercept.
Index(
    "ix_orders_held",
    orders.c.seq,
    sqlite_where=text("state = 'held'"),
    postgresql_where=text("state = 'held'"),
)
Index("ix_intercepts_order_id", intercepts.c.order_id)

# Stock (gateway/stock.py, ``POST /v1/stock``): the newest count of each SKU in each warehouse as a
# WMS or ERP reported it (``as_of``: when it was counted), and what the gateway reserved for the
# orders it accepted. A level's ``pending`` is the sum of the reservations made after its count: a
# count already reflects the orders before it. No foreign key to ``orders`` (migration 0009).
stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(120), primary_key=True),
    Column("warehouse", String(80), primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),  # what the WMS allocated itself
    Column("as_of", UTCDateTime(), nullable=False),
    # The gateway's reservations of this SKU and warehouse made after the count (``at > as_of``),
    # kept as a running total: recomputed when a count arrives, moved by every reservation.
    Column("pending", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime(), nullable=False),
)

stock_reservations = Table(
    "stock_reservations",
    metadata,
    Column("order_id", String(40), primary_key=True),
    Column("sku", String(120), primary_key=True),
    Column("warehouse", String(80), primary_key=True),
    Column("qty", BigInteger, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_stock_reservations_sku_warehouse_at", "sku", "warehouse", "at"),
)

# Keyed hashes (HMAC) of who and what an order is for, for the cross-channel duplicate rule: never
# the phone or address itself.
order_fingerprints = Table(
    "order_fingerprints",
    metadata,
    Column("fingerprint", String(128), primary_key=True),
    Column("order_id", String(40), primary_key=True),
    Column("platform", String(40), nullable=False),
    Column("shop_id", String(120), nullable=False),
    Column("platform_order_id", String(120), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_order_fingerprints_fingerprint_at", "fingerprint", "at"),
)

# What an ERP adapter keeps for one document across retries and restarts (``adapters/db/erp_handles.py``):
# a U8+ OpenAPI ``tradeid`` is stored before the first ``saleorder/add`` and reused on every retry
# (erp-protocols.md §2, O1). The key makes two racing workers end with one value.
erp_handles = Table(
    "erp_handles",
    metadata,
    Column("target", String(80), primary_key=True),
    Column("code", String(60), primary_key=True),  # the document code (``ErpDocument.code``)
    Column("name", String(40), primary_key=True),  # e.g. "tradeid"
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Shipments read back from the ERP (``gateway/readback.py``, ``adapters/db/erp_shipments.py``): one row
# per (target, the ERP's own shipment number, our sale-order code it ships: one U8 发货单 or K3 bill
# may ship several orders), written once in the same transaction as the order's
# ``erp.shipped`` timeline entry and audit entry; ``event_id`` is the status event's deterministic id.
erp_shipments = Table(
    "erp_shipments",
    metadata,
    Column("target", String(80), primary_key=True),
    Column("shipment_no", String(120), primary_key=True),
    Column("order_id", String(40), ForeignKey("orders.id"), nullable=False),
    Column("document_code", String(60), primary_key=True),
    Column("shipped_at", UTCDateTime()),
    Column("carrier", String(120)),
    Column("waybill_no", String(120)),
    Column("lines", _json(), nullable=False),  # [{item_code, qty, row}]
    Column("completes_order", Boolean(), nullable=False),  # with the earlier ones, every ordered unit shipped
    Column("event_id", String(300), nullable=False, unique=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_erp_shipments_order_id", "order_id"),
    Index("ix_erp_shipments_recorded_at", "recorded_at"),
)
