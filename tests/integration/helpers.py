"""Polling helpers for end-to-end tests."""

from __future__ import annotations

import time

FINAL = {"succeeded", "failed", "canceled"}


def wait_for_job(client, job_id: int, timeout: float = 180.0, statuses=FINAL) -> dict:
    """Poll GET /api/v1/jobs/<id> until its status is in `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
