"""Curation: image ratings, soft-delete columns, boards and board membership.

Revision ID: 0008
Revises: 0007
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


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX (no batch mode): rebuilding `images` on SQLite would drop the
    # FTS triggers. A constant default adds the column without rewriting the table on both databases.
    op.add_column("images", sa.Column("rating", sa.SmallInteger(), server_default=sa.text("0"), nullable=False))
    op.add_column("images", sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.add_column("images", sa.Column("deletion_id", sa.String(32), nullable=True))
    op.create_index("ix_images_rating_id", "images", ["rating", "id"])
    op.create_index("ix_images_deleted_at", "images", ["deleted_at"])
    op.create_index("ix_images_deletion_id", "images", ["deletion_id"])
    op.create_table(
        "boards",
        sa.Column("id", RowId, nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_boards")),
        sa.UniqueConstraint("owner_key_id", "name", name=op.f("uq_boards_owner_key_id")),
    )
    op.create_table(
        "board_images",
        sa.Column("board_id", RowId, nullable=False),
        sa.Column("image_id", RowId, nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"], ["boards.id"], name=op.f("fk_board_images_board_id_boards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_board_images_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("board_id", "image_id", name=op.f("pk_board_images")),
    )
    op.create_index("ix_board_images_image_id", "board_images", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_board_images_image_id", table_name="board_images")
    op.drop_table("board_images")
    op.drop_table("boards")
    op.drop_index("ix_images_deletion_id", table_name="images")
    op.drop_index("ix_images_deleted_at", table_name="images")
    op.drop_index("ix_images_rating_id", table_name="images")
    # DROP COLUMN in place (SQLite 3.35+), for the same reason as above: no table rebuild.
    op.drop_column("images", "deletion_id")
    op.drop_column("images", "deleted_at")
    op.drop_column("images", "rating")
