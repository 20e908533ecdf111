"""Scaling out: several workers on one queue, model routing, priorities, the worker registry,
and the supervisor keeping workers alive. Real `sdfarm worker` processes on SQLite."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
import redis
from sqlalchemy import func, select

from api import create_app
from models import Image
from models.db import make_engine, make_session_factory
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.integration.helpers import wait_for_job


@pytest.fixture
def scale_farm(tmp_path, redis_server, models_dir):
    """A fresh SQLite farm whose workers the test starts itself; fleets are stopped at the end."""
    redis.Redis.from_url(redis_server.url).flushall()
    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    fleets: list[WorkerFleet] = []

    class Farm:
        settings = make_settings(tmp_path, url, redis_server.url, models_dir)
        client = create_app(settings).test_client()
        sessions = make_session_factory(make_engine(url))

        @staticmethod
        def start(*args: str, expect: int = 1, **overrides) -> WorkerFleet:
            settings = make_settings(tmp_path, url, redis_server.url, models_dir, **overrides)
            fleet = WorkerFleet(settings, tmp_path / f"worker{len(fleets)}.log", "--gpus", "none", *args)
            fleets.append(fleet)
            return fleet.start(expect_workers=expect)

    yield Farm
    for fleet in fleets:
        fleet.stop()


def test_two_workers_share_a_job_and_finish_sooner(scale_farm):
    job = {"prompts": ["a red circle on a blue background"], "num_images": 40, "steps": 30, "seed": 1}
    one = scale_farm.start("--cpu-workers", "1")
    started = time.monotonic()
    alone = wait_for_job(scale_farm.client, scale_farm.client.post("/api/v1/jobs", json=job).json["id"])
    one_worker_seconds = time.monotonic() - started
    one.stop()
    assert alone["status"] == "succeeded"

    scale_farm.start("--cpu-workers", "2", expect=2)
    started = time.monotonic()
    shared = wait_for_job(scale_farm.client, scale_farm.client.post("/api/v1/jobs", json=job).json["id"])
    two_worker_seconds = time.monotonic() - started
    assert shared["status"] == "succeeded"
    names = {image["worker"].split("@")[0] for image in shared["images"]}
    assert names == {"cpu0", "cpu1"}
    assert two_worker_seconds < one_worker_seconds, (two_worker_seconds, one_worker_seconds)


def test_each_model_is_served_only_by_its_own_workers(scale_farm, models_dir):
    twin = models_dir / "tiny-twin"
    if not twin.exists():
        shutil.copytree(models_dir / "tiny", twin)
    scale_farm.start(expect=1)
    scale_farm.start("--model", "tiny-twin", expect=2)
    first = scale_farm.client.post("/api/v1/jobs", json={"prompts": ["x"], "num_images": 8, "steps": 2}).json
    second = scale_farm.client.post(
        "/api/v1/jobs", json={"prompts": ["x"], "num_images": 8, "steps": 2, "model": "tiny-twin"}
    ).json
    done = [wait_for_job(scale_farm.client, job["id"]) for job in (first, second)]
    workers = scale_farm.client.get("/api/v1/workers").json["workers"]
    model_of = {worker["name"]: worker["model"] for worker in workers}
    for job, model in zip(done, ("tiny", "tiny-twin"), strict=True):
        assert job["status"] == "succeeded"
        assert {model_of[image["worker"]] for image in job["images"]} == {model}
    listed = {m["name"]: m for m in scale_farm.client.get("/api/v1/models").json["models"]}
    assert listed["tiny"]["workers"] == 1 and listed["tiny-twin"]["workers"] == 1


def test_job_for_a_model_nobody_serves_waits_for_a_worker(scale_farm, models_dir):
    lonely = models_dir / "tiny-lonely"
    if not lonely.exists():
        shutil.copytree(models_dir / "tiny", lonely)
    job = scale_farm.client.post("/api/v1/jobs", json={"prompts": ["x"], "model": "tiny-lonely"})
    assert job.status_code == 202 and job.json["waiting_for_worker"] is True
    models = {m["name"]: m for m in scale_farm.client.get("/api/v1/models").json["models"]}
    assert models["tiny-lonely"] == models["tiny-lonely"] | {"workers": 0, "queued": 1}


def test_high_priority_job_submitted_later_finishes_first(scale_farm):
    scale_farm.start()
    low = scale_farm.client.post(
        "/api/v1/jobs", json={"prompts": ["bulk"], "num_images": 48, "steps": 20, "priority": 0}
    )
    time.sleep(1.0)
    high = scale_farm.client.post(
        "/api/v1/jobs", json={"prompts": ["now"], "num_images": 4, "steps": 20, "priority": 9}
    )
    high_done = wait_for_job(scale_farm.client, high.json["id"])
    low_now = scale_farm.client.get(f"/api/v1/jobs/{low.json['id']}?images=0").json
    assert high_done["status"] == "succeeded"
    assert low_now["status"] == "running" and low_now["succeeded"] < 48
    assert wait_for_job(scale_farm.client, low.json["id"])["status"] == "succeeded"


def test_worker_registry_lists_live_workers_and_marks_stopped_ones(scale_farm):
    fleet = scale_farm.start("--cpu-workers", "2", expect=2)
    workers = scale_farm.client.get("/api/v1/workers").json["workers"]
    assert [w["name"].split("@")[0] for w in workers] == ["cpu0", "cpu1"]
    assert all(w["online"] and w["state"] == "idle" and w["device"] == "cpu" and w["model_loads"] == 1 for w in workers)
    fleet.stop()
    time.sleep(0.5)
    assert not any(w["online"] for w in scale_farm.client.get("/api/v1/workers").json["workers"])


def test_killed_worker_goes_offline_within_the_heartbeat_window(scale_farm):
    fleet = scale_farm.start()
    os.killpg(fleet.process.pid, signal.SIGKILL)
    fleet.process.wait()
    deadline = time.monotonic() + scale_farm.settings.worker_offline_seconds + 2
    while scale_farm.client.get("/api/v1/workers").json["workers"][0]["online"]:
        assert time.monotonic() < deadline
        time.sleep(0.25)
    assert scale_farm.client.get("/api/v1/workers").json["workers"][0]["state"] == "offline"


def test_supervisor_restarts_killed_workers_and_warm_shutdown_leaves_nothing_running(scale_farm):
    fleet = scale_farm.start()
    job = scale_farm.client.post("/api/v1/jobs", json={"prompts": ["x"], "num_images": 24, "steps": 20}).json

    # Kill the Celery pool child (the process holding the model): Celery replaces it.
    (worker,) = fleet.celery_processes().values()
    pool_child = worker["child"]
    pool_child.kill()
    # Kill the whole Celery worker: the supervisor starts a new one.
    celery_main = worker["main"]
    celery_main.kill()
    deadline = time.monotonic() + 60
    while True:
        mains = [w["main"] for w in fleet.celery_processes().values()]
        if mains and mains[0].pid != celery_main.pid:
            break
        assert time.monotonic() < deadline, "supervisor did not restart the worker"
        time.sleep(0.2)

    finished = wait_for_job(scale_farm.client, job["id"], timeout=240)
    assert finished["status"] == "succeeded" and finished["succeeded"] == 24

    second = scale_farm.client.post("/api/v1/jobs", json={"prompts": ["y"], "num_images": 24, "steps": 20}).json
    deadline = time.monotonic() + 60
    while scale_farm.client.get(f"/api/v1/jobs/{second['id']}?images=0").json["running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert fleet.stop() == 0
    with scale_farm.sessions() as session:
        running = session.scalar(select(func.count()).where(Image.status == "running"))
    assert running == 0
