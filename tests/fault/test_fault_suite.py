"""Nothing lost, nothing doubled, nothing run after a cancel: a job runs while pool children and
whole workers are killed, Redis, PostgreSQL and the API restart, and other jobs are canceled.

The faults follow a seeded plan spread over the whole run (tests/fault/schedule.py). A short run
(200 images, every kind of fault at least once) is part of CI; the long one is
`SDFARM_FAULT_IMAGES=1000 make test PYTEST_ARGS="tests/fault -s"` (SDFARM_FAULT_SEED replays a plan).
The report is printed and written to tests/artifacts/fault-report.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from sqlalchemy import func, select

from models import Image, Job
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from sdfarm.farm_processes import ApiProcess, WorkerFleet
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer
from tests.conftest import ARTIFACTS, make_settings
from tests.fault.injector import FaultInjector
from tests.fault.postgres_server import PostgresServer, postgres_bin_dir
from tests.fault.schedule import format_report, make_schedule, summarize

IMAGES = int(os.environ.get("SDFARM_FAULT_IMAGES", "200"))
STEPS = int(os.environ.get("SDFARM_FAULT_STEPS", "8"))
SEED = int(os.environ.get("SDFARM_FAULT_SEED", "12"))
PACE = os.environ.get("SDFARM_FAULT_IMAGE_SECONDS", "1.5")  # seconds per image at least (PacedRunner)


@pytest.fixture
def private_farm(tmp_path, models_dir):
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    postgres = PostgresServer().start()
    redis_server = RedisServer(tmp_path / "redis").start()
    upgrade(postgres.url)
    settings = make_settings(tmp_path, postgres.url, redis_server.url, models_dir)
    farm = {"settings": settings, "postgres": postgres, "redis": redis_server}
    yield farm
    for part in ("fleet", "api"):
        if part in farm:
            farm[part].stop()
    farm["redis"].stop()
    postgres.stop()


@pytest.mark.timeout(max(900, IMAGES * 15))  # a loaded machine renders slowly; the suite's 600 s is for one test
def test_job_survives_faults_spread_over_the_whole_run(private_farm, tmp_path):
    # Paced like a GPU, so the workers also work as a GPU worker does: saving and claiming beside the render.
    paced = {"runner": "tests.fault.runners:PacedRunner", "overlap": "true"}
    settings = private_farm["settings"].model_copy(update=paced)
    fleet = private_farm["fleet"] = WorkerFleet(
        settings, tmp_path / "workers.log", "--gpus", "none", "--cpu-workers", "2", SDFARM_FAULT_IMAGE_SECONDS=PACE
    )
    fleet.start(expect_workers=2)
    api = private_farm["api"] = ApiProcess(settings, tmp_path / "api.log").start()
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    body = {"prompts": ["a red circle on a blue background", "a green square"], "steps": STEPS, "seed": 1}
    job_id = api.post("/api/v1/jobs", {**body, "num_images": IMAGES // 2})["id"]
    plan = make_schedule(IMAGES, SEED)
    report: dict = {
        "images": IMAGES,
        "steps": STEPS,
        "seed": SEED,
        "image_seconds": float(PACE),
        "planned": len(plan),
        "faults": [],
    }
    injector = FaultInjector(
        settings=settings,
        sessions=sessions,
        fleet=fleet,
        api=api,
        redis=private_farm["redis"],
        postgres=private_farm["postgres"],
        job_id=job_id,
        images=IMAGES,
        steps=STEPS,
        worker_names=sorted(fleet.celery_processes()),
    )
    started = time.monotonic()
    try:
        for fault in plan:
            report["faults"].append(injector.fire(fault))
        api.wait_for_job(job_id, timeout=IMAGES * 10)
    finally:
        private_farm["redis"], private_farm["postgres"] = injector.redis, injector.postgres
        report["total_seconds"] = round(time.monotonic() - started, 1)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "fault-report.json").write_text(json.dumps(report, indent=2))
        print("\n" + format_report(report))  # what happened so far, also when a fault did not recover
    time.sleep(1.0)  # let any straggling save finish before the audit

    report.update(audit(settings, sessions, job_id, injector.canceled_jobs))
    report["summary"] = summarize(report["faults"])
    (ARTIFACTS / "fault-report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report).splitlines()[-1])
    assert len(report["faults"]) == len(plan) and all(f["during_run"] for f in report["faults"])
    assert report["succeeded"] == IMAGES and report["lost"] == 0 and report["duplicated"] == 0, report["not_succeeded"]
    assert report["orphan_files"] == 0 and report["missing_files"] == 0 and report["sha256_mismatches"] == 0
    assert report["run_after_cancel"] == 0 and report["stuck_running"] == 0
    # A worker killed outright is noticed within the lease, not Celery's visibility timeout.
    assert all(
        f["recovery_seconds"] <= settings.lease_seconds + 10 for f in report["faults"] if f["kind"] == "worker_kill"
    )


def audit(settings, sessions, job_id: int, canceled_jobs: list[int]) -> dict:
    """Every row and file after the run: the figures the report's last line prints."""
    store = LocalImageStore(settings.resolved_object_dir)
    with sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job_id)))
        stuck = session.scalar(select(func.count()).where(Image.status == "running"))
        canceled = session.execute(
            select(Image, Job.canceled_at).join(Job, Job.id == Image.job_id).where(Image.job_id.in_(canceled_jobs))
        ).all()
        every_key = session.execute(select(Image.object_key, Image.thumb_key)).all()
    indexes = [row.index for row in rows]
    files = {key for key in store.keys() if key.startswith("jobs/")}
    referenced = {key for pair in every_key for key in pair if key}
    bad_hashes = [
        row.id
        for row in rows
        if row.object_key and hashlib.sha256(store.read(row.object_key)).hexdigest() != row.sha256
    ]
    # Run after cancel: claimed after the cancel, finished as a success after it, or not final at all.
    after_cancel = [
        image.id
        for image, canceled_at in canceled
        if canceled_at is None
        or image.status not in {"succeeded", "failed", "canceled"}
        or (image.started_at is not None and image.started_at > canceled_at)
        or (image.status == "succeeded" and image.finished_at > canceled_at)
    ]
    return {
        "succeeded": sum(row.status == "succeeded" for row in rows),
        "lost": IMAGES - len(set(indexes)) + sum(row.status != "succeeded" for row in rows),
        "duplicated": len(indexes) - len(set(indexes)),
        "orphan_files": len(files - referenced),
        "missing_files": len(referenced - files),
        "sha256_mismatches": len(bad_hashes),
        "canceled_jobs": len(canceled_jobs),
        "canceled_images": sum(image.status == "canceled" for image, _ in canceled),
        "run_after_cancel": len(after_cancel),
        "retries_counted": sum(row.attempts for row in rows) - len(rows),  # a dead batch's try is not counted
        # Which images did not succeed, and why: what a failed run is debugged from.
        "not_succeeded": [
            {"id": row.id, "index": row.index, "status": row.status, "attempts": row.attempts, "error": row.error}
            for row in rows
            if row.status != "succeeded"
        ],
        "stuck_running": stuck,
    }


def test_poison_item_is_tried_at_most_max_attempts_and_the_rest_completes(tmp_path, redis_server, models_dir):
    import redis as redis_client
    import requests  # noqa: F401 - the farm is driven through the in-process API client

    from api import create_app

    redis_client.Redis.from_url(redis_server.url).flushall()
    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, redis_server.url, models_dir, runner="tests.fault.runners:PoisonRunner")
    fleet = WorkerFleet(settings, tmp_path / "worker.log", "--gpus", "none").start()
    try:
        client = create_app(settings).test_client()
        items = [{"prompt": f"image {i}"} for i in range(11)] + [{"prompt": "poison pill"}]
        job = client.post("/api/v1/jobs", json={"items": items, "steps": 4}).json
        from tests.integration.helpers import wait_for_job

        done = wait_for_job(client, job["id"], timeout=300)
    finally:
        fleet.stop()
    poison = next(i for i in done["images"] if i["prompt"] == "poison pill")
    assert poison["status"] == "failed" and poison["attempts"] == settings.max_attempts
    assert "gave up after 3 attempts" in poison["error"]
    others = [i for i in done["images"] if i["prompt"] != "poison pill"]
    failed_others = [(i["prompt"], i["attempts"], i["error"]) for i in others if i["status"] != "succeeded"]
    assert failed_others == []
    assert all(i["attempts"] <= 2 for i in others)  # at most the batch it shared with the poison, then alone
