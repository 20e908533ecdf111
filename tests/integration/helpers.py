"""Polling helpers for end-to-end tests that drive the API through Flask's test client."""

from __future__ import annotations

from sdfarm.farm_processes import FINAL_JOB_STATUSES
from sdfarm.farm_processes import wait_for_job as wait_for_job_via


def wait_for_job(client, job_id: int, timeout: float = 180.0, statuses=FINAL_JOB_STATUSES) -> dict:
    """Poll GET /api/v1/jobs/<id> through the test client until its status is in `statuses`."""
    return wait_for_job_via(lambda path: client.get(path).json, job_id, timeout, statuses=statuses)
