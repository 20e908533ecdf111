"""A live farm for browser tests: the app behind a real HTTP server, a real worker, headless Chromium."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from werkzeug.serving import make_server

from models.settings import Settings
from sdfarm.farm_processes import REPO, WorkerFleet, wait_for_job

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
ARTIFACT_SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"

# Runs in every page before its own scripts (Playwright injects it; the page's CSP does not apply):
# records CSP violations, which would mean something tried to run or style inline.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


def chromium_binary() -> str | None:
    """The Chromium to drive: SDFARM_TEST_CHROMIUM, else `chromium` on the PATH."""
    return os.environ.get("SDFARM_TEST_CHROMIUM") or shutil.which("chromium")


@dataclass
class LiveFarm:
    """A farm reachable over HTTP at `base_url`."""

    base_url: str
    settings: Settings
    fleet: WorkerFleet
    http: requests.Session = field(default_factory=requests.Session)

    def api(self, path: str) -> dict:
        """GET a JSON API path."""
        response = self.http.get(self.base_url + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def submit(self, body: dict) -> int:
        """POST a job to the JSON API; its id."""
        response = self.http.post(self.base_url + "/api/v1/jobs", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    def wait_for_job(self, job_id: int, timeout: float = 180.0) -> dict:
        """Poll until the job is final."""
        return wait_for_job(self.api, job_id, timeout)


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="gallery-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def save_screenshot(page, name: str) -> Path:
    """A PNG of the page's viewport in tests/artifacts/screenshots/, or in docs/screenshots/ (the
    README's pictures) when SDFARM_UPDATE_SCREENSHOTS=1, so a test run leaves the tree clean."""
    folder = SCREENSHOTS if os.environ.get("SDFARM_UPDATE_SCREENSHOTS") == "1" else ARTIFACT_SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=False)
    return path
