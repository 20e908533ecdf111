"""64-bit row ids on PostgreSQL, so every id the API accepts fits its column

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

SQLite needs nothing: its INTEGER PRIMARY KEY is already a 64-bit rowid.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, nullable, the sequence behind it or None)
ID_COLUMNS = (
    ("jobs", "id", False, "jobs_id_seq"),
    ("images", "id", False, "images_id_seq"),
    ("images", "job_id", False, None),
    ("workers", "current_job_id", True, None),
)


def _retype(column_type: type[sa.types.TypeEngine], sql_type: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, column, nullable, sequence in ID_COLUMNS:
        op.alter_column(table, column, type_=column_type(), existing_nullable=nullable)
        if sequence:
            # A sequence made for a SERIAL column is itself typed integer and would stop at 2^31 - 1.
            op.execute(f"ALTER SEQUENCE {sequence} AS {sql_type}")


def upgrade() -> None:
    _retype(sa.BigInteger, "bigint")


def downgrade() -> None:
    _retype(sa.Integer, "integer")
