"""Webhooks from a farm with a real worker to a real receiver process that checks every signature."""

from __future__ import annotations

import time

import redis

from api import create_app
from models.webhook_secret import new_secret
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.integration.helpers import wait_for_job
from tests.receivers import Receiver


def test_job_events_are_signed_retried_and_logged(tmp_path, database_url, redis_server, models_dir, monkeypatch):
    upgrade(database_url)
    redis.Redis.from_url(redis_server.url).flushall()
    secret = new_secret()
    for name, value in {
        "SDFARM_WEBHOOK_SECRET": secret,
        "SDFARM_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
        "SDFARM_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(tmp_path, database_url, redis_server.url, models_dir)
    receiver = Receiver(secret, tmp_path / "hooks.jsonl", fails=1)
    fleet = WorkerFleet(settings, tmp_path / "worker.log", "--gpus", "none").start()
    app = create_app(settings)
    try:
        client = app.test_client()
        body = {"prompts": ["a", "b"], "steps": 2, "webhook_url": receiver.url, "webhook_events": ["image.finished"]}
        job = client.post("/api/v1/jobs", json=body).json
        wait_for_job(client, job["id"])
        # One refused try (the receiver fails once), then each of the three events once.
        seen = receiver.wait_for(4)
        time.sleep(1.5)  # nothing more should come
        seen = receiver.requests()
        many = client.post("/api/v1/jobs", json={"prompts": ["c"] * 40, "steps": 2, "webhook_url": receiver.url}).json
        assert client.post(f"/api/v1/jobs/{many['id']}/cancel").status_code == 200
        canceled = [r for r in receiver.wait_for(5) if r["body"]["data"]["job_id"] == many["id"]]
        log = client.get(f"/api/v1/jobs/{job['id']}/webhooks").json["deliveries"]
    finally:
        fleet.stop()
        receiver.stop()
        app.extensions["sdfarm"].engine.dispose()
    assert all(r["verified"] for r in seen), [r["reason"] for r in seen]
    delivered = [r["body"] for r in seen if r["status"] == 204]
    assert sorted(event["type"] for event in delivered) == ["image.finished", "image.finished", "job.succeeded"]
    assert len(seen) == 4 and seen[0]["status"] == 500
    assert [r["headers"]["webhook-id"] for r in seen].count(seen[0]["headers"]["webhook-id"]) == 2  # the retry
    finished = next(event for event in delivered if event["type"] == "job.succeeded")
    assert finished["data"]["job_id"] == job["id"] and finished["data"]["succeeded"] == 2
    assert [r["body"]["type"] for r in canceled] == ["job.canceled"]
    assert sorted(d["event"] for d in log) == ["image.finished", "image.finished", "job.succeeded"]
    assert all(d["status"] == "delivered" for d in log)
    assert sum(len(d["attempt_log"]) for d in log) == 4
    assert {a["outcome"] for d in log for a in d["attempt_log"]} == {"delivered", "http_error"}
