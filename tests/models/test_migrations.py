"""Alembic: one head, and upgrade/downgrade round trips on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from models import Base
from sdfarm.migrate import alembic_config, downgrade, upgrade


def test_single_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_upgrade_downgrade_round_trip(database_url):
    upgrade(database_url)
    engine = create_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    downgrade(database_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_schema_matches_the_models(database_url):
    """Autogenerate finds nothing to do: the migrations create exactly what the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, Base.metadata) if not _is_search_index(d)]
    engine.dispose()
    assert differences == []


def _is_search_index(difference) -> bool:
    # Full-text search structures are created by hand in migrations (FTS5 tables, GIN indexes).
    text = str(difference)
    return "images_fts" in text or "ix_images_prompt_search" in text
