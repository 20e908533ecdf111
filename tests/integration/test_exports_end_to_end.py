"""A job rendered by a real worker, exported by the worker side's background runner (no runner in the
test), downloaded and read back; the worker's images/s right after it made them."""

from __future__ import annotations

import tarfile
import time

from tests.integration.helpers import wait_for_job


def wait_for_export(client, export_id: int, timeout: float = 120.0) -> dict:
    """Poll GET /api/v1/exports/<id> until it has succeeded or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        export = client.get(f"/api/v1/exports/{export_id}").json
        if export["status"] in {"succeeded", "failed"}:
            return export
        time.sleep(0.2)
    raise TimeoutError(f"export {export_id} still {export['status']} after {timeout}s")


def test_the_supervisor_makes_an_export_of_a_rendered_job(farm):
    job = farm.client.post(
        "/api/v1/jobs", json={"prompts": ["a red circle", "a blue square"], "num_images": 2, "steps": 2}
    ).json
    assert wait_for_job(farm.client, job["id"])["status"] == "succeeded"
    created = farm.client.post("/api/v1/exports", json={"format": "webdataset", "job_id": job["id"], "shard_size": 3})
    assert created.status_code == 202
    export = wait_for_export(farm.client, created.json["id"])
    assert (export["status"], export["images"], [f["images"] for f in export["files"]]) == ("succeeded", 4, [3, 1])
    assert export["attempts"] == 1
    names = []
    for item in export["files"]:
        response = farm.client.get(item["url"])
        assert response.status_code == 200 and response.mimetype == "application/x-tar"
        path = farm.settings.data_dir / item["name"]
        path.write_bytes(response.get_data())
        with tarfile.open(path) as shard:
            names += shard.getnames()
    assert len(names) == 12 and {name.rsplit(".", 1)[1] for name in names} == {"png", "txt", "json"}


def test_images_per_second_right_after_a_worker_made_images(farm):
    job = farm.client.post("/api/v1/jobs", json={"prompts": ["a green triangle"], "num_images": 6, "steps": 2}).json
    finished = wait_for_job(farm.client, job["id"])
    assert finished["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while True:  # the numbers arrive with the worker's next heartbeat
        (worker,) = farm.client.get("/api/v1/workers").json["workers"]
        if worker["images_done"] >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert worker["images_done"] >= 6
    assert worker["images_per_second"] > 0, worker
