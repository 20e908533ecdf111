"""The spine: HTTP job -> Redis -> real Celery worker with the tiny model -> files and rows."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select

from models import Image, WorkerRecord
from models.image_store import LocalImageStore
from models.infotext import parse_infotext
from tests.integration.helpers import wait_for_job

PROMPTS = ["a red circle on a blue background", "a green square on a white background", "a photo of a cat"]


def test_bulk_job_runs_to_success_with_files_rows_and_batches(farm):
    client = farm.client
    response = client.post(
        "/api/v1/jobs",
        json={"prompts": PROMPTS, "num_images": 4, "steps": 4, "seed": 1000, "negative_prompt": "blurry"},
    )
    assert response.status_code == 202
    job = wait_for_job(client, response.json["id"])
    assert job["status"] == "succeeded", job
    assert (job["total"], job["succeeded"], job["failed"], job["progress"]) == (12, 12, 0, 1.0)

    store = LocalImageStore(farm.settings.resolved_object_dir)
    for image in job["images"]:
        assert image["status"] == "succeeded" and image["worker"].startswith("cpu0@")
        png = client.get(image["url"])
        assert png.status_code == 200 and png.mimetype == "image/png"
        picture = PILImage.open(io.BytesIO(png.data))
        picture.load()
        assert picture.size == (64, 64)
        infotext = parse_infotext(picture.text["parameters"])
        assert infotext["prompt"] == image["prompt"] and infotext["negative_prompt"] == "blurry"
        assert (infotext["seed"], infotext["steps"], infotext["sampler"]) == (image["seed"], 4, "euler_a")
        assert infotext["model"] == "tiny" and infotext["model_hash"] == image["model_hash"]
        assert image["sha256"] == hashlib.sha256(png.data).hexdigest()
        thumbnail = client.get(image["thumbnail_url"])
        assert thumbnail.mimetype == "image/webp" and PILImage.open(io.BytesIO(thumbnail.data)).format == "WEBP"

    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job["id"])))
        # Every row's file exists and matches its sha256; no other files for this job.
        for row in rows:
            assert hashlib.sha256(store.read(row.object_key)).hexdigest() == row.sha256
        job_files = {key for key in store.keys() if key.startswith(f"jobs/{job['id']:08d}/")}
        assert job_files == {row.object_key for row in rows} | {row.thumb_key for row in rows}
        # Batching: 12 images in max_batch=4 -> 3 pipeline calls (one lease token per call).
        batches = {row.lease_token for row in rows}
        assert len(batches) == 3
        worker = session.scalars(select(WorkerRecord)).one()
        assert worker.model_loads == 1
    # Inductor's cache is the data directory's: the worker set it before importing torch and diffusers.
    assert (farm.settings.data_dir / "compile-cache").is_dir()


def test_image_in_a_batch_equals_the_same_seed_rendered_alone(farm):
    client = farm.client
    batch_job = client.post("/api/v1/jobs", json={"prompts": PROMPTS, "num_images": 1, "steps": 4, "seed": 77}).json
    batch = wait_for_job(client, batch_job["id"])
    target = batch["images"][1]
    alone_job = client.post(
        "/api/v1/jobs", json={"items": [{"prompt": target["prompt"], "seed": target["seed"]}], "steps": 4}
    ).json
    alone = wait_for_job(client, alone_job["id"])["images"][0]
    with farm.sessions() as session:
        batch_row, alone_row = session.get(Image, target["id"]), session.get(Image, alone["id"])
        assert batch_row.lease_token != alone_row.lease_token
        batch_size = session.scalar(select(func.count()).where(Image.lease_token == batch_row.lease_token))
    assert batch_size == 3
    pixels = [np.asarray(PILImage.open(io.BytesIO(client.get(i["url"]).data)).convert("RGB")) for i in (target, alone)]
    # Batched matrix products may round the last float bit differently from a batch of one,
    # which can flip a handful of 8-bit values by one step; anything more would be a real bug.
    difference = np.abs(pixels[0].astype(int) - pixels[1].astype(int))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.001
    # And it is not trivially equal: a different seed gives a different picture.
    other = np.asarray(PILImage.open(io.BytesIO(client.get(batch["images"][0]["url"]).data)).convert("RGB"))
    assert np.abs(other.astype(int) - pixels[0].astype(int)).mean() > 5


def test_cancel_stops_queued_and_running_images_for_good(farm):
    client = farm.client
    job = client.post("/api/v1/jobs", json={"prompts": ["slow"], "num_images": 40, "steps": 30}).json
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/jobs/{job['id']}?images=0").json["running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    canceled = client.post(f"/api/v1/jobs/{job['id']}/cancel").json
    # Cancel is immediate: nothing of the job is queued or running once it answers.
    assert (canceled["status"], canceled["queued"], canceled["running"]) == ("canceled", 0, 0)
    assert canceled["canceled_at"] is not None
    snapshot = _statuses(farm, job["id"])
    # The batch that was rendering notices at its next lease renewal and stops; what it made is
    # discarded. Nothing changes afterwards: no image of a canceled job runs or succeeds later.
    time.sleep(3 * farm.settings.lease_seconds / 3 + 1)
    assert _statuses(farm, job["id"]) == snapshot
    finished = client.get(f"/api/v1/jobs/{job['id']}").json
    assert finished["canceled"] >= 40 - farm.settings.max_batch
    for image in finished["images"]:
        if image["status"] == "canceled":
            assert image["url"] is None
        else:
            assert image["status"] == "succeeded"
    # The discarded batch left no files behind.
    job_dir = farm.settings.resolved_object_dir / "jobs" / f"{job['id']:08d}"
    assert len(list(job_dir.glob("*.png"))) == finished["succeeded"]


def _statuses(farm, job_id: int) -> dict[int, str]:
    with farm.sessions() as session:
        return dict(session.execute(select(Image.id, Image.status).where(Image.job_id == job_id)).all())
