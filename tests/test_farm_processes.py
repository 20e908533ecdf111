"""The helper that starts farm processes for tests and benchmarks: the environment it hands a
child reproduces the settings exactly, and its waits end when they should."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.settings import Settings
from sdfarm.farm_processes import settings_env, wait_for_job, wait_until


def test_a_child_process_reads_back_the_same_settings(monkeypatch, tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+psycopg://u@127.0.0.1:5432/farm",
        redis_url="redis://127.0.0.1:6390/3",
        models_dir=tmp_path / "models",
        model="tiny",
        max_batch=3,
        lease_seconds=6.5,
        gallery_public=True,
        a1111_api=False,
        runner="tests.fault.runners:PacedRunner",
        auth="off",
        port=9999,
    )
    env = settings_env(settings)
    assert env["SDFARM_GALLERY_PUBLIC"] == "true" and env["SDFARM_A1111_API"] == "false"
    assert "SDFARM_WEBHOOK_SECRET" not in env  # None stays unset, not the string "None"
    assert "SDFARM_PORT" not in env  # given on the command line of `sdfarm api`
    for name in list(os.environ):
        if name.startswith("SDFARM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.model_dump(exclude={"port"}) == settings.model_dump(exclude={"port"})
    assert child.models_dir == Path(tmp_path / "models")


def test_sqlite_default_is_passed_as_a_full_url(tmp_path):
    env = settings_env(Settings(data_dir=tmp_path))
    assert env["SDFARM_DATABASE_URL"] == f"sqlite:///{(tmp_path / 'sdfarm.db').resolve()}"


def test_wait_for_job_polls_until_the_job_ends():
    answers = iter(["queued", "running", "running", "succeeded"])
    seen = []

    def fetch(path: str) -> dict:
        seen.append(path)
        return {"id": 7, "status": next(answers)}

    assert wait_for_job(fetch, 7, timeout=5, interval=0.01)["status"] == "succeeded"
    assert seen == ["/api/v1/jobs/7"] * 4


def test_wait_for_job_says_where_the_job_stood_when_it_gave_up():
    with pytest.raises(TimeoutError, match="job 7 still running"):
        wait_for_job(lambda _path: {"status": "running"}, 7, timeout=0.05, interval=0.01)


def test_wait_until_returns_the_time_taken_or_names_what_it_waited_for():
    calls = iter([False, False, True])
    assert 0 <= wait_until(lambda: next(calls), 5, "three calls", 0.01) < 1
    with pytest.raises(TimeoutError, match="the impossible"):
        wait_until(lambda: False, 0.05, "the impossible", 0.01)
