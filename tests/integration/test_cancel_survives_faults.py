"""Canceled means canceled, even when the worker holding the job dies (issue #12, defect 7).

An 8-image job; cancel while a batch of 4 is rendering; SIGKILL the pool child. Before the
lifecycle module, the reaper put the 4 interrupted images back (attempts 2) and they rendered
after the cancel.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from models import Image


def test_a_canceled_jobs_images_do_not_come_back_when_its_worker_dies(farm):
    client = farm.client
    job = client.post("/api/v1/jobs", json={"prompts": ["slow"], "num_images": 8, "steps": 40}).json
    deadline = time.monotonic() + 90
    while client.get(f"/api/v1/jobs/{job['id']}?images=0").json["running"] < farm.settings.max_batch:
        assert time.monotonic() < deadline, "the first batch never started"
        time.sleep(0.05)
    child = next(iter(farm.fleet.celery_processes().values()))["child"]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json["canceled"] == 8
    child.kill()
    # Long enough for the lease to expire and the reaper to pass several times.
    time.sleep(farm.settings.lease_seconds * 2 + 3)
    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job["id"])))
    assert {row.status for row in rows} == {"canceled"}
    assert max(row.attempts for row in rows) <= 1
    job_dir = farm.settings.resolved_object_dir / "jobs" / f"{job['id']:08d}"
    assert not job_dir.exists() or not list(job_dir.glob("*.png"))
