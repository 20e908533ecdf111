"""Gallery fixtures: a session on the test farm's database, for rows written without the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from models.db import make_engine, make_session_factory


@pytest.fixture
def session(settings) -> Iterator[Session]:
    """A session on the (migrated) test database."""
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as db_session:
        yield db_session
    engine.dispose()
