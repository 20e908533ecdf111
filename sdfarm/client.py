"""The HTTP client behind `sdfarm submit`, `sdfarm status` and `sdfarm export`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

FINAL = {"succeeded", "failed", "canceled"}
DEFAULT_URL = "http://127.0.0.1:8000"
# `sdfarm up` writes the URL it serves on here, in its data directory, and removes it when it stops.
URL_FILE = "farm-url"
# How long `wait` keeps polling through errors (a restarting API, a dropped connection) before it gives up.
POLL_PATIENCE_SECONDS = 120.0
QUIET_LINE_SECONDS = 5.0


class FarmClient:
    """Talks to a running farm's JSON API."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        self.notices: list[str] = []
        self.source = "given"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    @classmethod
    def from_env(cls, url: str | None = None, data_dir: Path | None = None) -> FarmClient:
        """Client for `url`, else SDFARM_URL, else the farm `sdfarm up` started in `data_dir`, else the default;
        with SDFARM_API_KEY if set. `source` says which one was used."""
        url, source = find_farm_url(url, data_dir)
        client = cls(url, os.environ.get("SDFARM_API_KEY"))
        client.source = source
        return client

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The response; TransientError for what a later try may not meet (no connection, 5xx, 429)."""
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TransientError(f"cannot reach the farm at {self.url} ({type(error).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"the farm answered {response.status_code}: {_message(response)}")
        return response

    def _call(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        try:
            response = self._request(method, path, **kwargs)
        except TransientError as error:
            raise SystemExit(f"{error}; is `sdfarm up` (or `sdfarm api`) running?") from None
        if response.status_code >= 400:
            raise SystemExit(f"error {response.status_code}: {_message(response)}")
        return response.json()

    def submit(self, job: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """POST a job; returns the accepted job. The key makes a retried submit return the same job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/api/v1/jobs", json=job, headers=headers)

    def job(self, job_id: int, images: bool = True) -> dict[str, Any]:
        """GET a job."""
        return self._call("GET", f"/api/v1/jobs/{job_id}", params={"images": "1" if images else "0"})

    def poll(self, job_id: int, patience: float = POLL_PATIENCE_SECONDS) -> dict[str, Any]:
        """GET a job without its images, retrying transient errors (with backoff) for up to `patience` seconds."""

        def say(state: RetryCallState) -> None:
            self.notices.append(f"{state.outcome.exception()}; retrying")

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=0.5, max=10),
            stop=stop_after_delay(patience),
            before_sleep=say,
            reraise=True,
        )
        try:
            response = retrying(self._request, "GET", f"/api/v1/jobs/{job_id}", params={"images": "0"})
        except TransientError as error:
            raise SystemExit(f"gave up waiting after {patience:.0f}s of errors: {error}") from None
        if response.status_code >= 400:
            raise SystemExit(f"error {response.status_code}: {_message(response)}")
        return response.json()

    def wait(self, job_id: int, interval: float = 0.5, out=None, progress_bar: bool | None = None) -> dict[str, Any]:
        """Poll until the job ends: a rich progress bar (rate, ETA) on a terminal, a line per change otherwise."""
        console = Console(file=out or sys.stderr)
        bar = console.is_terminal if progress_bar is None else progress_bar
        if bar:
            self._wait_with_bar(job_id, interval, console)
        else:
            self._wait_quietly(job_id, interval, console)
        return self.job(job_id)

    def _wait_with_bar(self, job_id: int, interval: float, console: Console) -> None:
        columns = (
            TextColumn("job {task.fields[job]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
        )
        started = time.monotonic()
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("job", total=None, job=job_id, failed=0, rate="", eta="-", note="")
            while True:
                job = self.poll(job_id)
                done = job["succeeded"] + job["failed"] + job["canceled"]
                note = "waiting for a worker" if job["waiting_for_worker"] else ""
                if self.notices:
                    note, self.notices = self.notices[-1], []
                progress.update(
                    task,
                    total=job["total"],
                    completed=job["progress"] * job["total"],
                    failed=job["failed"],
                    rate=_rate(done, time.monotonic() - started),
                    eta=_eta(job.get("eta_seconds")),
                    note=note,
                )
                if job["status"] in FINAL:
                    return
                time.sleep(interval)

    def _wait_quietly(self, job_id: int, interval: float, console: Console) -> None:
        """For logs and pipes: a plain line when the counts change, at most one every few seconds."""
        started, last_line, last_said = time.monotonic(), "", 0.0
        while True:
            job = self.poll(job_id)
            done = job["succeeded"] + job["failed"] + job["canceled"]
            line = (
                f"job {job_id}: {job['status']}, {done}/{job['total']} done, {job['failed']} failed, "
                f"{_rate(done, time.monotonic() - started)}, ETA {_eta(job.get('eta_seconds'))}"
            )
            for notice in self.notices:
                console.print(notice, highlight=False, soft_wrap=True)
            self.notices = []
            final = job["status"] in FINAL
            changed = line.split(", ETA")[0] != last_line.split(", ETA")[0]
            if final or (changed and time.monotonic() - last_said >= QUIET_LINE_SECONDS):
                console.print(line, highlight=False, soft_wrap=True)
                last_line, last_said = line, time.monotonic()
            if final:
                return
            time.sleep(interval)

    def submit_export(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST an export request; returns the queued export."""
        return self._call("POST", "/api/v1/exports", json=body)

    def export(self, export_id: int) -> dict[str, Any]:
        """GET an export."""
        return self._call("GET", f"/api/v1/exports/{export_id}")

    def wait_export(self, export_id: int, interval: float = 0.5, out=None) -> dict[str, Any]:
        """Poll until the export has succeeded or failed, with a progress bar (plain lines when piped)."""
        console = Console(file=out or sys.stderr)
        columns = (
            TextColumn("export {task.fields[export]} ({task.fields[state]})"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
            task = progress.add_task("export", total=None, export=export_id, state="queued")
            last = ""
            while True:
                export = self.export(export_id)
                progress.update(task, total=export["images"] or None, completed=export["done"], state=export["status"])
                line = f"export {export_id}: {export['status']}, {export['done']}/{export['images']} images"
                if not console.is_terminal and line != last:
                    console.print(line, highlight=False, soft_wrap=True)
                    last = line
                if export["status"] in {"succeeded", "failed"}:
                    return export
                time.sleep(interval)

    def download(self, path: str, target: Path) -> int:
        """Stream a download URL (a path on the farm) into `target`; returns the bytes written."""
        partial = target.with_name(target.name + ".part")
        try:
            response = self.session.get(self.url + path, stream=True, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise SystemExit(f"cannot reach the farm at {self.url} ({type(error).__name__})") from None
        with response:
            if response.status_code >= 400:
                raise SystemExit(f"error {response.status_code}: {_message(response)}")
            written = 0
            with partial.open("wb") as handle:
                for chunk in response.iter_content(1024 * 1024):
                    handle.write(chunk)
                    written += len(chunk)
        partial.replace(target)
        return written


def find_farm_url(url: str | None = None, data_dir: Path | None = None) -> tuple[str, str]:
    """The farm's URL and where it came from: --url, SDFARM_URL, the file `sdfarm up` wrote, or the default."""
    if url:
        return url.rstrip("/"), "--url"
    if os.environ.get("SDFARM_URL"):
        return os.environ["SDFARM_URL"].rstrip("/"), "SDFARM_URL"
    directory = Path(data_dir or os.environ.get("SDFARM_DATA_DIR") or "./data")
    written = directory / URL_FILE
    try:
        text = written.read_text().strip()
    except OSError:
        text = ""
    if text.startswith(("http://", "https://")) and len(text) < 500:
        return text.rstrip("/"), f"the farm `sdfarm up` started ({written})"
    return DEFAULT_URL, "the default; set --url or SDFARM_URL for another farm"


class TransientError(Exception):
    """A failure a later try may not meet: no connection, a timeout, a 5xx or 429 answer."""


def _message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        details = "; ".join(f"{f['field']}: {f['reason']}" for f in error.get("fields", []))
        return error["message"] + (f" ({details})" if details else "")
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def _rate(done: float, seconds: float) -> str:
    return f"{done / seconds:.2f} img/s" if seconds > 0 and done else "- img/s"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
