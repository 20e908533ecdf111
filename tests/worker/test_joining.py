"""A worker host joins with three URLs: TLS options and passwords pass through untouched, every URL
is shown with its password masked, and each host's worker names are its own."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import redis
from click.testing import CliRunner

from models.base import utcnow
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from models.queue import RenderQueue, make_celery
from models.settings import Settings
from models.urls import mask_url
from models.worker_record import WorkerRecord
from sdfarm.cli import main
from tests.farm_harness import fresh_postgres_database, postgres_admin_url
from worker.joining import NameInUseError, check_names_free, log_farm_urls
from worker.supervisor import plan_workers

PG_TLS = "postgresql+psycopg://farm:s3cret%40pw@db.example:5432/sdfarm?sslmode=verify-full&sslrootcert=/ca.pem"
REDIS_TLS = "rediss://:r3dis-pw@cache.example:6380/0?ssl_cert_reqs=required"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (PG_TLS, "postgresql+psycopg://farm:***@db.example:5432/sdfarm?sslmode=verify-full&sslrootcert=/ca.pem"),
        (REDIS_TLS, "rediss://:***@cache.example:6380/0?ssl_cert_reqs=required"),
        ("rediss://default:pw@h:6380", "rediss://default:***@h:6380"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://u@h/db?password=secret&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("sqlite:////data/sdfarm.db", "sqlite:////data/sdfarm.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_urls_are_shown_with_the_password_masked(url, shown):
    assert mask_url(url) == shown


def test_tls_urls_and_passwords_pass_through_to_the_clients():
    settings = Settings(redis_url=REDIS_TLS, database_url=PG_TLS)
    assert make_celery(settings).conf.broker_url == REDIS_TLS
    pool = RenderQueue(make_celery(settings), settings.redis_url).redis.connection_pool
    assert pool.connection_class is redis.SSLConnection and pool.connection_kwargs["password"] == "r3dis-pw"
    engine = make_engine(settings.resolved_database_url)
    assert engine.url.password == "s3cret@pw"
    assert dict(engine.url.query) == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}


def test_worker_names_carry_the_host_name(monkeypatch):
    named = plan_workers("tiny", [0, 1], 1, 4, Settings(host_name="gpu-host-7"))
    assert [w.name for w in named] == ["gpu0@gpu-host-7", "gpu1@gpu-host-7"]
    monkeypatch.setattr("socket.gethostname", lambda: "machine")
    assert [w.name for w in plan_workers("tiny", None, 2, 4, Settings())] == ["cpu0@machine", "cpu1@machine"]
    with pytest.raises(ValueError, match="SDFARM_HOST_NAME may hold only"):
        Settings(host_name="bad name@x")


def test_the_joining_log_line_masks_every_password(tmp_path, caplog):
    settings = Settings(redis_url=REDIS_TLS, database_url=PG_TLS, host_name="gpu-host-7")
    with caplog.at_level(logging.INFO, logger="sdfarm.supervisor"):
        log_farm_urls(settings, LocalImageStore(tmp_path))
    line = caplog.messages[-1]
    assert "r3dis-pw" not in line and "s3cret" not in line
    assert "farm:***@db.example" in line and "rediss://:***@cache.example" in line and "sslmode=verify-full" in line
    assert line.startswith("joining the farm as host gpu-host-7")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_name_is_free_once_its_worker_stopped_or_went_silent(settings):
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    now = utcnow()
    beats = {"live@h": ("idle", now), "stopped@h": ("stopped", now), "silent@h": ("busy", now - timedelta(seconds=60))}
    with sessions() as session:
        for name, (state, seen) in beats.items():
            session.add(
                WorkerRecord(name=name, host="h", pid=1, device="cpu", model="tiny", state=state, last_seen=seen)
            )
        session.commit()
    check_names_free(sessions, ["stopped@h", "silent@h", "new@h"], offline_seconds=10)
    with pytest.raises(NameInUseError, match=r"in use by a live worker: live@h \(pid 1 on h"):
        check_names_free(sessions, ["new@h", "live@h"], offline_seconds=10)


def test_db_upgrade_prints_the_url_without_its_password():
    if not postgres_admin_url():
        pytest.skip("SDFARM_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    with fresh_postgres_database() as url:
        # The test server trusts local connections, so any password is accepted and must not be shown.
        with_password = url.replace("://postgres@", "://postgres:hunter2@", 1)
        assert "hunter2" in with_password
        result = CliRunner().invoke(main, ["db", "upgrade"], env={"SDFARM_DATABASE_URL": with_password})
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output and "postgres:***@" in result.output
