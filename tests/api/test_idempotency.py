"""Idempotency-Key on POST /api/v1/jobs: one job per key and body, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from models.job import Job

JOB = {"prompts": ["a red circle"], "num_images": 2, "steps": 2}


def _count_jobs(app) -> int:
    with app.extensions["sdfarm"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_same_key_and_body_returns_the_first_job(app, client):
    first = client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    # Key order and spacing do not make another request.
    again = client.post(
        "/api/v1/jobs",
        data='{"steps": 2,  "num_images": 2, "prompts": ["a red circle"]}',
        headers={"Idempotency-Key": "retry-1", "Content-Type": "application/json"},
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"] and again.headers["Location"] == first.headers["Location"]
    assert _count_jobs(app) == 1
    other = client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "retry-2"})
    assert other.status_code == 202 and other.json["id"] != first.json["id"]
    assert client.post("/api/v1/jobs", json=JOB).json["id"] not in {first.json["id"], other.json["id"]}
    assert _count_jobs(app) == 3


def test_same_key_with_another_body_is_422_naming_the_header(client):
    assert client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "k"}).status_code == 202
    response = client.post("/api/v1/jobs", json={**JOB, "steps": 3}, headers={"Idempotency-Key": "k"})
    assert response.status_code == 422
    assert response.json["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert "different request" in response.json["error"]["fields"][0]["reason"]


def test_malformed_key_is_422(client):
    for key in ("x" * 256, "has space"):
        response = client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": key})
        assert response.status_code == 422 and response.json["error"]["fields"][0]["field"] == "Idempotency-Key"


def test_a_refused_job_does_not_use_up_the_key(client):
    bad = client.post("/api/v1/jobs", json={**JOB, "model": "nope"}, headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 422
    assert client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "k2"}).status_code == 202


def test_concurrent_requests_with_one_key_make_one_job(app):
    results: list = []
    barrier = threading.Barrier(6)

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "race"})
        results.append((response.status_code, response.json.get("id")))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    assert {status for status, _ in results} <= {200, 202} and [s for s, _ in results].count(202) == 1
    assert len({job_id for _, job_id in results}) == 1
    assert _count_jobs(app) == 1


def test_job_carries_queue_position_and_eta(client):
    first = client.post("/api/v1/jobs", json={**JOB, "num_images": 3}).json
    second = client.post("/api/v1/jobs", json=JOB).json
    assert first["queue_position"] == 0 and second["queue_position"] == 3
    assert second["eta_seconds"] is None  # no worker serves the model: no honest estimate
    urgent = client.post("/api/v1/jobs", json={**JOB, "priority": 9}).json
    assert urgent["queue_position"] == 0
    assert client.get(f"/api/v1/jobs/{second['id']}").json["queue_position"] == 5
