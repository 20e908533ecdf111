"""prompt search: FTS5 on SQLite, a GIN full-text index on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# External content: the FTS table stores only the index, the text stays in images.prompt.
SQLITE_UPGRADE = (
    "CREATE VIRTUAL TABLE images_fts USING fts5("
    "prompt, content='images', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    """CREATE TRIGGER images_fts_after_insert AFTER INSERT ON images BEGIN
        INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
    END""",
    """CREATE TRIGGER images_fts_after_delete AFTER DELETE ON images BEGIN
        INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
    END""",
    # "OF prompt": workers update status and progress rows many times a second; only a new
    # prompt changes the index, so only that may touch it.
    """CREATE TRIGGER images_fts_after_update AFTER UPDATE OF prompt ON images BEGIN
        INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
        INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
    END""",
    # Index the rows that existed before this migration.
    "INSERT INTO images_fts(images_fts) VALUES ('rebuild')",
)

SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS images_fts_after_update",
    "DROP TRIGGER IF EXISTS images_fts_after_delete",
    "DROP TRIGGER IF EXISTS images_fts_after_insert",
    "DROP TABLE IF EXISTS images_fts",
)

# 'simple': no stemming and no stop words, so both databases match whole words the same way.
# Queries must spell the expression exactly so (see api/gallery/search.py) for the index to be used.
POSTGRES_UPGRADE = (
    "CREATE INDEX ix_images_prompt_search ON images USING gin (to_tsvector('simple', prompt))",
    # A gallery search is "newest first, LIMIT 49": the planner walks the primary key backwards
    # when it thinks matches are common, and uses this index when it knows they are rare. With the
    # default statistics a rare or absent word looked common (any word outside the ~100 most common
    # was guessed at ~0.5%), and a search for it read every row: 3 s at a million. A longer list of
    # word frequencies fixes the guess; ANALYZE samples more rows for it.
    "ALTER INDEX ix_images_prompt_search ALTER COLUMN 1 SET STATISTICS 1000",
)
POSTGRES_DOWNGRADE = ("DROP INDEX IF EXISTS ix_images_prompt_search",)


def _run(statements: tuple[str, ...]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_context().dialect.name  # works offline (--sql) too
    if dialect == "sqlite":
        _run(SQLITE_UPGRADE)
    elif dialect == "postgresql":
        _run(POSTGRES_UPGRADE)


def downgrade() -> None:
    dialect = op.get_context().dialect.name  # works offline (--sql) too
    if dialect == "sqlite":
        _run(SQLITE_DOWNGRADE)
    elif dialect == "postgresql":
        _run(POSTGRES_DOWNGRADE)
