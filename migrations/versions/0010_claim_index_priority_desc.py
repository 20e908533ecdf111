"""The claim index in the claim's own order (priority descending, then id), so a claim reads one index entry.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain DROP/CREATE INDEX (no batch mode): rebuilding `images` on SQLite would drop the FTS triggers.
    op.drop_index("ix_images_claim", table_name="images")
    op.create_index("ix_images_claim", "images", ["model", "status", sa.text("priority DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_images_claim", table_name="images")
    op.create_index("ix_images_claim", "images", ["model", "status", "priority", "id"])
