"""dictionary_versions: every version of every dictionary (TOML text, state, who and when), and
dictionary_publication: the generation every process watches to switch to newly published ones

Revision ID: 0005_dictionary_versions
Revises: 0004_refunds
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_dictionary_versions"
down_revision: str | None = "0004_refunds"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in adapters/db/tables.py as they were at this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
_PUBLISHED = sa.text("state = 'published'")


def upgrade() -> None:
    op.create_table(
        "dictionary_versions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("platform", sa.String(40)),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("proposed_by", sa.String(120), nullable=False),
        sa.Column("proposed_at", TS, nullable=False),
        sa.Column("approved_by", sa.String(120)),
        sa.Column("approved_at", TS),
        sa.Column("published_by", sa.String(120)),
        sa.Column("published_at", TS),
        sa.Column("superseded_at", TS),
        sa.Column("rejected_by", sa.String(120)),
        sa.Column("rejected_at", TS),
        sa.Column("base_id", sa.BigInteger()),
        sa.Column("dry_run", JSON),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_dictionary_versions"),
    )
    op.create_index("ix_dictionary_versions_name_digest", "dictionary_versions", ["name", "digest"])
    op.create_index(
        "ux_dictionary_versions_published",
        "dictionary_versions",
        ["name"],
        unique=True,
        sqlite_where=_PUBLISHED,
        postgresql_where=_PUBLISHED,
    )
    publication = op.create_table(
        "dictionary_publication",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.String(120), nullable=False),
        sa.Column("changed_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_dictionary_publication"),
        sa.CheckConstraint("id = 1", name="ck_dictionary_publication_single_row"),
    )
    op.bulk_insert(publication, [{"id": 1, "generation": 0, "changed_by": "migration", "changed_at": None}])


def downgrade() -> None:
    op.drop_table("dictionary_publication")
    op.drop_index("ux_dictionary_versions_published", table_name="dictionary_versions")
    op.drop_index("ix_dictionary_versions_name_digest", table_name="dictionary_versions")
    op.drop_table("dictionary_versions")
