"""Gallery fixtures: a session on the test farm's database, for rows written without the API; Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from models.db import make_engine, make_session_factory
from tests.gallery.browser import CHROMIUM_ARGS, chromium_binary


@pytest.fixture
def session(settings) -> Iterator[Session]:
    """A session on the (migrated) test database."""
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as db_session:
        yield db_session
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright."""
    binary = chromium_binary()
    if not binary:
        pytest.skip("no Chromium binary: install chromium or set SDFARM_TEST_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
