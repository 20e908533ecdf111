"""The HTTP client behind `sdfarm submit` and `sdfarm status`."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import requests


class FarmClient:
    """Talks to a running farm's JSON API."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    @classmethod
    def from_env(cls, url: str | None = None) -> FarmClient:
        """Client for SDFARM_URL (default http://127.0.0.1:8000) with SDFARM_API_KEY if set."""
        return cls(url or os.environ.get("SDFARM_URL", "http://127.0.0.1:8000"), os.environ.get("SDFARM_API_KEY"))

    def _call(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise SystemExit(
                f"cannot reach the farm at {self.url}; is `sdfarm up` (or `sdfarm api`) running?"
            ) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                details = "; ".join(f"{f['field']}: {f['reason']}" for f in error.get("fields", []))
                message = error["message"] + (f" ({details})" if details else "")
            except (ValueError, KeyError):
                message = response.text[:500]
            raise SystemExit(f"error {response.status_code}: {message}")
        return response.json()

    def submit(self, job: dict[str, Any]) -> dict[str, Any]:
        """POST a job; returns the accepted job."""
        return self._call("POST", "/api/v1/jobs", json=job)

    def job(self, job_id: int, images: bool = True) -> dict[str, Any]:
        """GET a job."""
        return self._call("GET", f"/api/v1/jobs/{job_id}", params={"images": "1" if images else "0"})

    def wait(self, job_id: int, interval: float = 0.5, out=sys.stderr) -> dict[str, Any]:
        """Poll until the job ends, drawing a progress bar on `out`."""
        while True:
            job = self.job(job_id, images=False)
            filled = int(job["progress"] * 30)
            out.write(
                f"\rjob {job_id} [{'#' * filled}{'.' * (30 - filled)}] {job['progress'] * 100:5.1f}% "
                f"{job['succeeded']}/{job['total']} done, {job['failed']} failed"
                + (" (waiting for a worker)" if job["waiting_for_worker"] else "")
            )
            out.flush()
            if job["status"] in {"succeeded", "failed", "canceled"}:
                out.write("\n")
                return self.job(job_id)
            time.sleep(interval)
