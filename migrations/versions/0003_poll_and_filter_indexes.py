"""Indexes for status polls (covering) and for the gallery's model and date filters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain CREATE INDEX (no batch mode): rebuilding `images` on SQLite would drop the FTS triggers.
    op.create_index("ix_images_job_status", "images", ["job_id", "status", "progress"])
    op.create_index("ix_images_model_status_id", "images", ["model", "status", "id"])
    op.create_index("ix_images_queued_at", "images", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_images_queued_at", table_name="images")
    op.drop_index("ix_images_model_status_id", table_name="images")
    op.drop_index("ix_images_job_status", table_name="images")
