"""Shared fixtures: a tiny model, a private Redis, a database per test (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from models.settings import Settings
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer
from tests.farm_harness import fresh_postgres_database, postgres_admin_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models directory holding the tiny model, built once per test session."""
    from worker.model_build.tiny import build_tiny_model

    directory = tmp_path_factory.mktemp("models")
    build_tiny_model(directory / "tiny")
    return directory


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (never the shared one on 6379)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind; PostgreSQL needs SDFARM_TEST_POSTGRES_URL (set by .ci/run)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sdfarm.db'}"
        return
    if not postgres_admin_url():
        pytest.skip("SDFARM_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    with fresh_postgres_database() as url:
        yield url


def make_settings(data_dir: Path, database_url: str, redis_url: str, models_dir: Path, **overrides) -> Settings:
    """Settings for a test farm: tiny model, short leases and heartbeats so tests run quickly."""
    values = dict(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        models_dir=models_dir,
        model="tiny",
        max_batch=4,
        lease_seconds=6.0,
        heartbeat_seconds=0.5,
        worker_offline_seconds=3.0,
        # Tests read a job's status right after changing it; tests/api/test_job_status.py turns caching on.
        status_cache_seconds=0.0,
        auth="off",
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path, database_url, redis_server, models_dir) -> Settings:
    """Migrated database, empty Redis, tiny model."""
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(database_url)
    return make_settings(tmp_path, database_url, redis_server.url, models_dir)


@pytest.fixture
def app(settings):
    """The Flask app on the test farm."""
    from api import create_app

    application = create_app(settings)
    application.testing = True
    yield application
    application.extensions["sdfarm"].engine.dispose()


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint (moto's standalone server over HTTP) for the whole session."""
    from tests.s3_server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "s3.log").start()
    yield server
    server.stop()
