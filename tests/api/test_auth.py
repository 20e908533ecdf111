"""API keys: tenants see only their own jobs, admins see all, limits answer 429 with Retry-After."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.auth import create_key
from sdfarm.farm_processes import REPO

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def keys(app):
    app.extensions["sdfarm"].settings.auth = "on"
    with app.extensions["sdfarm"].sessions() as session:
        alice = create_key(session, "alice")[1]
        bob = create_key(session, "bob")[1]
        admin = create_key(session, "root", admin=True)[1]
    return {
        name: {"Authorization": f"Bearer {secret}"}
        for name, secret in (("alice", alice), ("bob", bob), ("admin", admin))
    }


def test_requests_without_a_valid_key_get_401(client, keys):
    response = client.get("/api/v1/jobs")
    assert response.status_code == 401 and "sdfarm keys create" in response.json["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer sdf_wrong"}).status_code == 401
    assert client.get("/healthz").status_code == 200  # health checks need no key


def test_each_key_sees_and_cancels_only_its_own(client, keys):
    job = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 2}, headers=keys["alice"]).json
    image_id = client.get(f"/api/v1/jobs/{job['id']}", headers=keys["alice"]).json["images"][0]["id"]
    for url in (f"/api/v1/jobs/{job['id']}", f"/api/v1/images/{image_id}", f"/api/v1/images/{image_id}/file"):
        assert client.get(url, headers=keys["bob"]).status_code == 404
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=keys["bob"]).status_code == 404
    assert client.get("/api/v1/jobs", headers=keys["bob"]).json["jobs"] == []
    assert client.get("/api/v1/images", headers=keys["bob"]).json["images"] == []
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=keys["alice"]).json["jobs"]] == [job["id"]]
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=keys["admin"]).json["jobs"]] == [job["id"]]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=keys["admin"]).json["status"] == "canceled"
    bob_cannot_reuse = client.post(
        "/api/v1/jobs", json={"prompts": ["b"], "init_image_id": image_id}, headers=keys["bob"]
    )
    assert bob_cannot_reuse.status_code == 422


def test_rate_limit_answers_429_with_retry_after(app, client, keys):
    app.extensions["sdfarm"].settings.rate_limit_per_minute = 5
    codes = [client.get("/api/v1/jobs", headers=keys["alice"]).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    limited = client.get("/api/v1/jobs", headers=keys["alice"])
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 and "rate limit" in limited.json["error"]["message"]
    assert client.get("/api/v1/jobs", headers=keys["bob"]).status_code == 200  # per key


def test_queued_image_cap_per_key(app, client, keys):
    app.extensions["sdfarm"].settings.max_queued_per_key = 5
    assert (
        client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 4}, headers=keys["alice"]).status_code == 202
    )
    over = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 2}, headers=keys["alice"])
    assert over.status_code == 429 and over.headers["Retry-After"] == "60"
    assert client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 2}, headers=keys["bob"]).status_code == 202


def test_keys_cli_and_public_bind_without_auth_is_refused(tmp_path, settings):
    env = {**os.environ, "SDFARM_DATABASE_URL": settings.resolved_database_url, "SDFARM_DATA_DIR": str(tmp_path)}
    created = subprocess.run(
        [sys.executable, "-m", "sdfarm.cli", "keys", "create", "carol"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0 and "sdf_" in created.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "sdfarm.cli", "keys", "list"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "carol" in listed.stdout and created.stdout.strip().splitlines()[-1] not in listed.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "sdfarm.cli", "api", "--host", "0.0.0.0"],
        env={**env, "SDFARM_AUTH": "off"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "refusing to serve on 0.0.0.0" in refused.stderr
