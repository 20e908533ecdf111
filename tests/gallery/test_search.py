"""Prompt search on both databases: whole words, any case, every word required, user text never parsed as syntax."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from api.gallery.queries import Cursor, gallery_images
from models import Image
from models.image_query import ImageFilters
from models.prompt_search import PostgresSearch, SqliteFtsSearch, query_words, search_for_dialect
from tests.factories import add_images

PROMPTS = [
    "a red circle on a blue background",
    "a green square on a white background",
    "a photo of a cat, Red fur",
    "Café au lait in a big mug",
    "robot_arm welding sparks",
]


def search(session, text: str, **filters) -> list[str]:
    page = gallery_images(session, ImageFilters(q=text, **filters), None, Cursor())
    return [image.prompt for image in page.rows]


def test_search_is_chosen_by_dialect():
    assert isinstance(search_for_dialect("sqlite"), SqliteFtsSearch)
    assert isinstance(search_for_dialect("postgresql"), PostgresSearch)
    with pytest.raises(ValueError, match="mysql"):
        search_for_dialect("mysql")


def test_query_words_drop_syntax():
    assert query_words('red "OR" cat* NEAR(a b) -x') == ["red", "OR", "cat", "NEAR", "a", "b", "x"]
    assert query_words("robot_arm") == ["robot", "arm"]
    assert query_words("<script>") == ["script"]
    assert SqliteFtsSearch.match_expression(["red", "cat"]) == '"red" "cat"'


def test_whole_words_any_case_all_required(session):
    add_images(session, PROMPTS)
    assert search(session, "red") == [PROMPTS[2], PROMPTS[0]]  # newest first, "Red" matches too
    assert search(session, "RED background") == [PROMPTS[0]]
    assert search(session, "background") == [PROMPTS[1], PROMPTS[0]]
    assert search(session, "circ") == []  # whole words only, on both databases
    assert search(session, "café") == [PROMPTS[3]]
    assert search(session, "arm") == [PROMPTS[4]]
    assert search(session, "dog") == []


def test_query_syntax_is_not_interpreted(session):
    add_images(session, PROMPTS)
    for text in ['"', "'", "red OR cat", "NEAR(red cat)", "cat*", "a:b", "-red", "^red", "\\", "%_", "red & !cat"]:
        results = search(session, text)
        words = [word.lower() for word in query_words(text)]
        assert all(all(word in prompt.lower().replace(",", " ").split() for word in words) for prompt in results), text
    assert search(session, "red OR cat") == []  # OR is a word here, not an operator


def test_empty_or_punctuation_only_query_shows_everything(session):
    add_images(session, PROMPTS)
    assert len(search(session, "")) == len(search(session, "!!! ...")) == len(PROMPTS)


def test_search_combines_with_filters_and_pages(session):
    first = add_images(session, [f"a cat number {n}" for n in range(60)])
    add_images(session, ["a cat in a failed job"], status="failed")
    add_images(session, ["a dog"] * 5)
    page = gallery_images(session, ImageFilters(q="cat"), None, Cursor())
    assert len(page.rows) == 48 and page.older == page.rows[-1].id and page.newer is None
    rest = gallery_images(session, ImageFilters(q="cat"), None, Cursor(before=page.older))
    assert [image.id for image in page.rows + rest.rows] == [image.id for image in reversed(first)]
    assert rest.older is None and rest.newer == rest.rows[0].id
    assert search(session, "cat", status="failed") == ["a cat in a failed job"]
    assert search(session, "cat", job=first[0].job_id, seed=1005) == ["a cat number 5"]


def test_index_follows_updates_and_deletes(session):
    images = add_images(session, ["an old prompt", "another prompt"])
    images[0].prompt = "a brand new prompt"
    images[0].status = "running"
    session.commit()
    session.delete(images[1])
    session.commit()
    assert search(session, "old", status="any") == []
    assert search(session, "brand", status="any") == ["a brand new prompt"]
    assert search(session, "another", status="any") == []
    # Status changes alone (what workers do all day) leave the row findable.
    images[0].status = "succeeded"
    session.commit()
    assert search(session, "brand") == ["a brand new prompt"]


def test_rows_from_before_the_migration_are_indexed(tmp_path):
    from sqlalchemy import MetaData, create_engine, insert
    from sqlalchemy.orm import Session

    from models.base import utcnow
    from sdfarm.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = create_engine(url)
    # Written through the tables as revision 0001 had them: today's models have columns added since.
    old = MetaData()
    old.reflect(engine)
    prompt = "written before the search index existed"
    with engine.begin() as connection:
        job = {"model": "tiny", "total": 1, "priority": 5, "spec": {"prompts": [prompt]}, "created_at": utcnow()}
        job_id = connection.execute(insert(old.tables["jobs"]).values(**job)).inserted_primary_key[0]
        image = {
            **{"job_id": job_id, "index": 0, "prompt": prompt, "negative_prompt": "", "seed": 1, "steps": 4},
            **{"guidance_scale": 7.5, "width": 64, "height": 64, "scheduler": "euler_a", "model": "tiny"},
            **{"batch_key": "k", "priority": 5, "loras": [], "status": "succeeded", "queued_at": utcnow()},
            **{"clip_skip": 1, "attempts": 1, "progress": 1.0, "run_alone": False, "nsfw": False},
        }
        connection.execute(insert(old.tables["images"]).values(**image))
    upgrade(url)
    with Session(engine) as new_session:
        assert search(new_session, "existed") == [prompt]
        assert new_session.scalar(select(Image.id)) is not None
    engine.dispose()


def test_search_index_survives_to_the_latest_migration(tmp_path):
    """A later migration that rebuilds `images` in SQLite batch mode drops its triggers; this notices."""
    from sqlalchemy import create_engine, text

    from sdfarm.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'head.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        triggers = set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
        tables = set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
    engine.dispose()
    assert {"images_fts_after_insert", "images_fts_after_delete", "images_fts_after_update"} <= triggers
    assert "images_fts" in tables
