"""SDFARM_LOG_FORMAT=json: a real worker's log (supervisor, worker, Celery) is JSON lines, and the
lines about a batch name its job, batch, images, model and worker."""

from __future__ import annotations

import json

import redis

from api import create_app
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.integration.helpers import wait_for_job


def test_worker_logs_are_json_lines_naming_the_work(tmp_path, redis_server, models_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    redis.Redis.from_url(redis_server.url).flushall()
    monkeypatch.setenv("SDFARM_LOG_FORMAT", "json")
    settings = make_settings(tmp_path, url, redis_server.url, models_dir)
    log_path = tmp_path / "worker.log"
    fleet = WorkerFleet(settings, log_path, "--gpus", "none").start()
    app = create_app(settings)
    try:
        client = app.test_client()
        job = client.post("/api/v1/jobs", json={"prompts": ["a", "b"], "num_images": 2, "steps": 2}).json
        finished = wait_for_job(client, job["id"])
        image_ids = {image["id"] for image in finished["images"]}
    finally:
        fleet.stop()
        app.extensions["sdfarm"].engine.dispose()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # every line, whoever wrote it, is one JSON object
        assert {"timestamp", "level", "logger", "message"} <= set(record), record
        records.append(record)
    loggers = {record["logger"] for record in records}
    assert any(name.startswith("celery") for name in loggers), loggers  # Celery's own lines, same format
    assert "sdfarm.supervisor" in loggers
    work = [record for record in records if record.get("job_id") == job["id"]]
    assert any(record["message"].startswith("rendered") for record in work)
    assert any(record["message"].startswith("stored") for record in work)
    for record in work:
        assert record["model"] == "tiny" and record["worker"].startswith("cpu0@")
        assert record["batch"] and set(record["image_ids"]) <= image_ids
    assert {i for record in work for i in record["image_ids"]} == image_ids
