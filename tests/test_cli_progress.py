"""`sdfarm submit --wait`'s polling: a rich bar on a terminal, plain lines when piped, and errors survived."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

from models import lifecycle
from models.db import make_engine, make_session_factory
from sdfarm import client as client_module
from sdfarm.client import FarmClient
from tests.gallery.browser import serve


class Flaky:
    """WSGI middleware: the first `failures` job polls get 503, as from a restarting API behind a proxy."""

    def __init__(self, app, failures: int):
        self.app, self.failures = app, failures

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"].startswith("/api/v1/jobs/") and self.failures > 0:
            self.failures -= 1
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"restarting"]
        return self.app(environ, start_response)


def _finish_job_in_steps(settings, job_id: int, steps: int = 4) -> threading.Thread:
    """Claim and succeed the job's images one at a time, as a worker would, in a thread."""
    sessions = make_session_factory(make_engine(settings.resolved_database_url))

    def work() -> None:
        for _ in range(steps):
            time.sleep(0.4)
            claim = lifecycle.claim(sessions, model="tiny", worker="w@h", max_batch=1, lease_seconds=30)
            if claim is None:
                return
            lifecycle.succeed(sessions, token=claim.token, results={claim.items[0].id: {"object_key": None}})

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_piped_output_is_plain_lines_and_polling_survives_503s(app, settings, monkeypatch):
    monkeypatch.setattr(client_module, "QUIET_LINE_SECONDS", 0.0)
    with serve(Flaky(app, failures=3)) as base_url:
        client = FarmClient(base_url)
        job = client.submit({"prompts": ["a", "b", "c", "d"], "steps": 2})
        worker = _finish_job_in_steps(settings, job["id"])
        out = io.StringIO()
        finished = client.wait(job["id"], interval=0.1, out=out)
        worker.join(timeout=30)
    text = out.getvalue()
    assert finished["status"] == "succeeded" and finished["succeeded"] == 4
    assert "\r" not in text and "\x1b[" not in text  # no frames or colours in a pipe
    lines = text.splitlines()
    assert sum("the farm answered 503" in line for line in lines) == 3
    progress = [line for line in lines if line.startswith(f"job {job['id']}:")]
    assert progress[-1].startswith(f"job {job['id']}: succeeded, 4/4 done, 0 failed")
    assert "img/s" in progress[-1] and "ETA" in progress[-1]
    assert len(progress) <= 6  # one line per change, not one per poll


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_terminal_gets_a_progress_bar_with_rate_and_eta(app, settings):
    with serve(app) as base_url:
        client = FarmClient(base_url)
        job = client.submit({"prompts": ["a", "b"], "steps": 2})
        worker = _finish_job_in_steps(settings, job["id"], steps=2)
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, width=120)
        client._wait_with_bar(job["id"], 0.1, console)
        worker.join(timeout=30)
    text = out.getvalue()
    assert "2/2" in text and "img/s" in text and "ETA" in text and "━" in text


def test_polling_gives_up_after_its_patience(monkeypatch):
    client = FarmClient("http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(SystemExit, match="gave up waiting"):
        client.poll(1, patience=1.0)
