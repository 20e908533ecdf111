"""Status polls: ETag / If-None-Match, the per-process status cache, and the job's event stream (SSE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from api.auth import create_key
from models import lifecycle
from sdfarm.farm_processes import REPO, settings_env
from sdfarm.redis_server import free_port


def _submit(client, images: int = 4, headers=None) -> int:
    response = client.post("/api/v1/jobs", json={"prompts": ["a cat"], "num_images": images}, headers=headers or {})
    assert response.status_code == 202, response.json
    return response.json["id"]


def _finish_two(app, job_id: int) -> list[int]:
    """Claim the job's first batch and record two of its images as succeeded (files are not needed here)."""
    sessions = app.extensions["sdfarm"].sessions
    claim = lifecycle.claim(sessions, model="tiny", worker="w@h", max_batch=2, lease_seconds=30)
    assert claim is not None and claim.items[0].job_id == job_id
    results = {
        item.id: {"object_key": f"k{item.id}.png", "thumb_key": f"k{item.id}.webp", "sha256": "0" * 64}
        for item in claim.items
    }
    assert lifecycle.succeed(sessions, token=claim.token, results=results) == set(results)
    return sorted(results)


def _events(response) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each event in a finished text/event-stream body."""
    found = []
    for block in response.get_data(as_text=True).split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


def test_unchanged_status_answers_304_and_a_change_a_new_etag(client, app):
    job_id = _submit(client)
    first = client.get(f"/api/v1/jobs/{job_id}?images=0")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag and first.headers["Cache-Control"] == "no-cache"
    again = client.get(f"/api/v1/jobs/{job_id}?images=0", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == etag
    _finish_two(app, job_id)
    changed = client.get(f"/api/v1/jobs/{job_id}?images=0", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["succeeded"] == 2
    assert changed.headers["ETag"] != etag


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cached_status_is_reused_but_still_tenant_checked(client, app):
    farm = app.extensions["sdfarm"]
    farm.status_cache.seconds = 60
    farm.settings.auth = "on"
    with farm.sessions() as session:
        alice = {"Authorization": "Bearer " + create_key(session, "alice")[1]}
        bob = {"Authorization": "Bearer " + create_key(session, "bob")[1]}
    job_id = _submit(client, headers=alice)
    assert client.get(f"/api/v1/jobs/{job_id}?images=0", headers=alice).json["succeeded"] == 0
    _finish_two(app, job_id)
    # Within the cache's lifetime the same answer comes back without counting the images again...
    assert client.get(f"/api/v1/jobs/{job_id}?images=0", headers=alice).json["succeeded"] == 0
    # ...but never to another tenant.
    assert client.get(f"/api/v1/jobs/{job_id}?images=0", headers=bob).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/events", headers=bob).status_code == 404
    # A cancel through this process forgets the job's cached status.
    canceled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice).json
    assert canceled["status"] == "canceled"
    fresh = client.get(f"/api/v1/jobs/{job_id}?images=0", headers=alice).json
    assert (fresh["succeeded"], fresh["canceled"]) == (2, 2)


def test_event_stream_sends_progress_each_finished_image_and_the_end(client, app):
    job_id = _submit(client)
    done = _finish_two(app, job_id)
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    response = client.get(f"/api/v1/jobs/{job_id}/events")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = _events(response)
    names = [name for _id, name, _data in events]
    assert names == ["progress", "image", "image", "image", "image", "end"]
    assert events[0][2]["status"] == "canceled" and events[0][2]["succeeded"] == 2
    images = [data for _id, name, data in events if name == "image"]
    assert sorted(image["id"] for image in images if image["status"] == "succeeded") == done
    assert all(image["url"] == f"/api/v1/images/{image['id']}/file" for image in images if image["id"] in done)
    assert sum(image["status"] == "canceled" and image["url"] is None for image in images) == 2
    assert events[-1][2] == {"status": "canceled"}
    # Reconnecting with Last-Event-ID resumes after the image it names.
    resumed = _events(client.get(f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": events[2][0]}))
    assert [data["id"] for _id, name, data in resumed if name == "image"] == [data["id"] for data in images[2:]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_event_stream_is_bounded_in_time_and_in_number(client, app):
    farm = app.extensions["sdfarm"]
    job_id = _submit(client)
    farm.settings.events_max_seconds = 0.5
    response = client.get(f"/api/v1/jobs/{job_id}/events")
    body = response.get_data(as_text=True)
    assert body.startswith("retry: ") and "event: progress" in body and "event: end" not in body
    farm.settings.events_streams_per_process = 0
    refused = client.get(f"/api/v1/jobs/{job_id}/events")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "event streams" in refused.json["error"]["message"]
    assert client.get("/api/v1/jobs/999999/events").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_event_stream_under_gunicorn(settings, tmp_path):
    """The real `sdfarm api` (gunicorn, threads): a stream stays open beside other requests, the
    process's stream limit answers 503, and a cancel ends the open stream."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), "SDFARM_EVENTS_STREAMS_PER_PROCESS": "1"}
    log = (tmp_path / "api.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "sdfarm.cli", "api", "--port", str(port), "--processes", "1"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.2)
        job_id = requests.post(base + "/api/v1/jobs", json={"prompts": ["a"], "num_images": 3}, timeout=30).json()["id"]
        with requests.get(f"{base}/api/v1/jobs/{job_id}/events", stream=True, timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            lines = stream.iter_lines(decode_unicode=True)
            assert next(line for line in lines if line.startswith("event:")) == "event: progress"
            # The stream holds one thread; the process still answers, and refuses a second stream.
            assert requests.get(f"{base}/api/v1/jobs/{job_id}?images=0", timeout=30).json()["status"] == "queued"
            assert requests.get(f"{base}/api/v1/jobs/{job_id}/events", timeout=30).status_code == 503
            requests.post(f"{base}/api/v1/jobs/{job_id}/cancel", timeout=30).raise_for_status()
            names = [line for line in lines if line.startswith("event:")]
        assert names[-1] == "event: end" and names.count("event: image") == 3
        # A client that goes away gives its slot back within a few ticks (the keep-alive write fails).
        live = requests.post(base + "/api/v1/jobs", json={"prompts": ["b"], "num_images": 1}, timeout=30).json()["id"]
        first = requests.get(f"{base}/api/v1/jobs/{live}/events", stream=True, timeout=30)
        assert first.status_code == 200
        first.close()
        deadline = time.monotonic() + 15
        while (again := requests.get(f"{base}/api/v1/jobs/{live}/events", stream=True, timeout=30)).status_code == 503:
            again.close()
            assert time.monotonic() < deadline, "the slot of a closed stream was never given back"
            time.sleep(0.5)
        again.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
