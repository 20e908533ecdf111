"""Webhook outbox and attempts, idempotency keys, per-key options, GPU use in heartbeats.

Revision ID: 0007
Revises: 0005
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


revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_options",
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sd_model", sa.String(200), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.String(200), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_key_options")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", RowId, nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("job_id", RowId, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_idempotency_keys_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("owner_key_id", "key", name=op.f("uq_idempotency_keys_owner_key_id")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", RowId, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("job_id", RowId, nullable=False),
        sa.Column("image_id", RowId, nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_webhook_deliveries_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_webhook_deliveries_message_id")),
    )
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["job_id", "event", "image_id"], unique=True)
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", RowId, nullable=False),
        sa.Column("delivery_id", RowId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"])
    # Nullable columns: SQLite adds them in place, no table rebuild.
    op.add_column("workers", sa.Column("gpu_memory_used_mb", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("webhook_image_events", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("workers", sa.Column("gpu_utilization", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_image_events")
        batch.drop_column("webhook_url")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("gpu_utilization")
        batch.drop_column("gpu_memory_used_mb")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("idempotency_keys")
    op.drop_table("key_options")
