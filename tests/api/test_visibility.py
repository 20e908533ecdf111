"""Tenants see only their own work in the farm-wide views, and no server paths; admins see everything."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from api.auth import create_key
from api.routes import served_routes
from api.visibility import hide_paths
from models.board import Board
from models.export import Export
from models.worker_record import WorkerRecord
from tests.factories import add_images
from tests.farm_harness import REPO


@pytest.fixture
def farm_rows(app, tmp_path, models_dir):
    """Three keys; alice and bob each with queued work and a worker rendering it; a failed image naming a path."""
    settings = app.extensions["sdfarm"].settings
    settings.auth = "on"
    (models_dir / "extra.safetensors").write_bytes(b"")  # a single-file checkpoint beside the tiny model
    settings.resolved_lora_dir.mkdir(parents=True, exist_ok=True)
    (settings.resolved_lora_dir / "style.safetensors").write_bytes(b"")
    with app.extensions["sdfarm"].sessions() as session:
        alice, alice_secret = create_key(session, "alice")
        bob, bob_secret = create_key(session, "bob")
        admin_secret = create_key(session, "root", admin=True)[1]
        alice_job = add_images(session, ["a", "b", "c"], status="queued", owner=alice.id)[0].job_id
        bob_job = add_images(session, ["d"], status="queued", owner=bob.id)[0].job_id
        failed = add_images(
            session,
            ["e"],
            status="failed",
            owner=alice.id,
            error=f"OSError: cannot read {models_dir}/extra.safetensors: header too large",
        )[0]
        for name, job_id in (("cpu0@a", alice_job), ("cpu1@b", bob_job)):
            session.add(WorkerRecord(name=name, host="farm1", pid=1, device="cpu", model="tiny", state="busy"))
            session.flush()
            session.execute(update(WorkerRecord).where(WorkerRecord.name == name).values(current_job_id=job_id))
        export = Export(owner_key_id=alice.id, format="zip", selection={"job_id": alice_job}, status="failed")
        export.error = f"OSError: cannot write {tmp_path}/exports"
        session.add(export)
        board = Board(owner_key_id=alice.id, name="alice's board")
        session.add(board)
        session.commit()
        ids = {
            "board": board.id,
            "alice_job": alice_job,
            "bob_job": bob_job,
            "failed_image": failed.id,
            "failed_job": failed.job_id,
            "export": export.id,
        }
    headers = {
        name: {"Authorization": f"Bearer {secret}"}
        for name, secret in (("alice", alice_secret), ("bob", bob_secret), ("admin", admin_secret))
    }
    yield headers, ids
    (models_dir / "extra.safetensors").unlink()  # the models folder is shared by the session's tests


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_workers_show_a_current_job_only_to_its_owner(client, farm_rows):
    headers, ids = farm_rows

    def current_jobs(who: str) -> dict[str, int | None]:
        workers = client.get("/api/v1/workers", headers=headers[who]).json["workers"]
        return {worker["name"]: worker["current_job_id"] for worker in workers}

    assert current_jobs("alice") == {"cpu0@a": ids["alice_job"], "cpu1@b": None}
    assert current_jobs("bob") == {"cpu0@a": None, "cpu1@b": ids["bob_job"]}
    assert current_jobs("admin") == {"cpu0@a": ids["alice_job"], "cpu1@b": ids["bob_job"]}


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_models_show_own_queue_depths_and_no_paths(client, farm_rows, models_dir):
    headers, _ids = farm_rows

    def models(who: str) -> dict[str, dict]:
        return {model["name"]: model for model in client.get("/api/v1/models", headers=headers[who]).json["models"]}

    assert models("alice")["tiny"]["queued"] == 3
    assert models("bob")["tiny"]["queued"] == 1
    assert models("admin")["tiny"]["queued"] == 4
    assert models("alice")["extra"]["path"] == "extra.safetensors"
    assert models("admin")["extra"]["path"] == str(models_dir / "extra.safetensors")
    assert client.get("/sdapi/v1/sd-models", headers=headers["bob"]).json[-1]["filename"] == "extra.safetensors"
    assert client.get("/sdapi/v1/loras", headers=headers["bob"]).json == [
        {"name": "style", "alias": "style", "path": "style.safetensors", "metadata": {}}
    ]
    admin_loras = client.get("/sdapi/v1/loras", headers=headers["admin"]).json
    assert admin_loras[0]["path"].startswith("/") and admin_loras[0]["path"].endswith("/style.safetensors")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_errors_naming_server_paths_keep_only_the_file_name(client, farm_rows, models_dir):
    headers, ids = farm_rows
    shown = client.get(f"/api/v1/images/{ids['failed_image']}", headers=headers["alice"]).json["error"]
    assert shown == "OSError: cannot read .../extra.safetensors: header too large"
    page = client.get(f"/images/{ids['failed_image']}", headers=headers["alice"]).get_data(as_text=True)
    assert ".../extra.safetensors" in page and str(models_dir) not in page
    admin = client.get(f"/api/v1/images/{ids['failed_image']}", headers=headers["admin"]).json["error"]
    assert str(models_dir) in admin


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_answer_to_a_tenant_names_a_server_path(app, client, farm_rows, models_dir, tmp_path):
    """Every GET route of the API (and A1111's), answered to a key that is not an admin."""
    headers, ids = farm_rows
    roots = {str(models_dir), str(tmp_path), str(REPO), str(app.extensions["sdfarm"].settings.resolved_lora_dir)}
    values = {"job_id": ids["failed_job"], "image_id": ids["failed_image"], "export_id": ids["export"], "number": 1}
    values["board_id"] = ids["board"]
    checked = 0
    for route in served_routes(app.extensions["sdfarm"].settings):
        if "GET" not in route.methods or "<name>" in route.rule:
            continue
        url = re.sub(r"<id:(\w+)>", lambda match: str(values[match.group(1)]), route.rule)
        response = client.get(url, headers=headers["alice"])
        # The failed image and export have no files: their files answer 404, whose body is checked as well.
        no_file = route.media in {"image/png", "image/webp", "application/octet-stream"}
        assert response.status_code == (404 if no_file else 200), url
        body = response.get_data(as_text=True) if not response.mimetype.startswith("image/") else ""
        leaked = [root for root in roots if root in body]
        assert not leaked, f"{url} shows {leaked}"
        checked += 1
    assert checked >= 25


def test_hide_paths_keeps_urls_and_relative_names(app):
    with app.test_request_context():
        from flask import g

        from models.api_key import ApiKey

        g.api_key = ApiKey(id=7, name="t", prefix="sdf_x", secret_hash="h", is_admin=False)
        assert hide_paths("no such file: '/srv/w/sd15/unet.bin'") == "no such file: '.../unet.bin'"
        assert hide_paths("see http://host/a/b and a/b/c") == "see http://host/a/b and a/b/c"
        assert hide_paths(None) is None
        g.api_key = None
        assert hide_paths("'/srv/w/unet.bin'") == "'/srv/w/unet.bin'"
