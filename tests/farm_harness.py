"""Starting real farm parts for tests: databases, a private Redis, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.settings import Settings
from models.worker_record import WorkerRecord

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "SDFARM_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    """The PostgreSQL server tests may create databases on (set by .ci/run), or None."""
    return os.environ.get(POSTGRES_ENV)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (module), dropped afterwards."""
    admin = postgres_admin_url()
    assert admin, f"{POSTGRES_ENV} is not set"
    name = f"sdfarm_test_{uuid.uuid4().hex[:12]}"
    conninfo = admin.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_env(settings: Settings) -> dict[str, str]:
    """The SDFARM_* environment that makes a child process see the same farm as `settings`."""
    env = {
        "SDFARM_DATA_DIR": str(settings.data_dir),
        "SDFARM_DATABASE_URL": settings.resolved_database_url,
        "SDFARM_REDIS_URL": settings.redis_url,
        "SDFARM_MAX_BATCH": str(settings.max_batch),
        "SDFARM_LEASE_SECONDS": str(settings.lease_seconds),
        "SDFARM_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
        "SDFARM_WORKER_OFFLINE_SECONDS": str(settings.worker_offline_seconds),
        "SDFARM_MAX_ATTEMPTS": str(settings.max_attempts),
        "SDFARM_STATUS_CACHE_SECONDS": str(settings.status_cache_seconds),
        "SDFARM_AUTH": settings.auth,
        "SDFARM_RUNNER": settings.runner,
        "HF_HUB_OFFLINE": "1",
    }
    if settings.model:
        env["SDFARM_MODEL"] = settings.model
    if settings.models_dir:
        env["SDFARM_MODELS_DIR"] = str(settings.models_dir)
    for name in ("object_store", "s3_endpoint_url", "host_name"):
        if getattr(settings, name):
            env[f"SDFARM_{name.upper()}"] = str(getattr(settings, name))
    return env


class WorkerFleet:
    """`sdfarm worker` started as a real process (its own Celery workers and pool children)."""

    def __init__(self, settings: Settings, log_path: Path, *args: str, env: dict[str, str] | None = None):
        self.settings = settings
        self.log_path = log_path
        self.args = args
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self, expect_workers: int = 1, timeout: float = 120.0) -> WorkerFleet:
        """Start and wait until `expect_workers` workers report idle with the model loaded."""
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        self.log = self.log_path.open("ab")
        started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdfarm.cli", "worker", *self.args],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(expect_workers, started, timeout)
        return self

    def wait_ready(self, expect_workers: int, since: float, timeout: float = 120.0) -> None:
        """Wait for heartbeats saying the models are loaded."""
        sessions = make_session_factory(make_engine(self.settings.resolved_database_url))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; log: {self.log_path}")
            with sessions() as session:
                ready = [
                    r
                    for r in session.scalars(select(WorkerRecord))
                    if r.state in {"idle", "busy"} and r.last_seen.timestamp() >= since
                ]
            if len(ready) >= expect_workers:
                return
            time.sleep(0.3)
        raise TimeoutError(f"workers not ready after {timeout}s; log: {self.log_path}")

    def stop(self, timeout: float = 60.0) -> int:
        """Warm shutdown via SIGTERM, as an operator would."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()
        finally:
            self.log.close()
