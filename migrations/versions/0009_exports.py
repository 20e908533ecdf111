"""Dataset exports (image folder, WebDataset, zip), claimed by background runners with a lease.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Self-contained (no import from models/): 64-bit ids on PostgreSQL, SQLite's rowid INTEGER there.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def UTCDateTime() -> sa.DateTime:  # noqa: N802 - reads like the model's column type
    """Timestamps with a time zone, as models.base.UTCDateTime stores them."""
    return sa.DateTime(timezone=True)


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", RowId, nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=True),
        sa.Column("scope_key_id", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("shard_size", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
    )
    op.create_index("ix_exports_claim", "exports", ["status", "lease_expires_at"])
    op.create_index(op.f("ix_exports_owner_key_id"), "exports", ["owner_key_id"])


def downgrade() -> None:
    op.drop_table("exports")
