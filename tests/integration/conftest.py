"""A running farm per test module: database, private Redis, one real `sdfarm worker` process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_session_factory
from models.settings import Settings
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.farm_harness import fresh_postgres_database, postgres_admin_url


@dataclass
class RunningFarm:
    """What an end-to-end test talks to."""

    settings: Settings
    client: FlaskClient
    sessions: sessionmaker[Session]
    fleet: WorkerFleet


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def farm(request, tmp_path_factory, redis_server, models_dir) -> Iterator[RunningFarm]:
    """API (in-process test client) + one CPU worker process, on SQLite or PostgreSQL."""
    from api import create_app

    data_dir = tmp_path_factory.mktemp(f"farm-{request.param}")
    if request.param == "postgresql":
        if not postgres_admin_url():
            pytest.skip("SDFARM_TEST_POSTGRES_URL is not set (.ci/run sets it)")
        database = fresh_postgres_database()
        url = database.__enter__()
    else:
        database, url = None, f"sqlite:///{data_dir / 'sdfarm.db'}"
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(url)
    settings = make_settings(data_dir, url, redis_server.url, models_dir)
    fleet = WorkerFleet(settings, data_dir / "worker.log", "--gpus", "none").start()
    app = create_app(settings)
    try:
        yield RunningFarm(settings, app.test_client(), make_session_factory(make_engine(url)), fleet)
    finally:
        fleet.stop()
        app.extensions["sdfarm"].engine.dispose()
        if database is not None:
            database.__exit__(None, None, None)
