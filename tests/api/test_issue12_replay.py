"""Issue #12's repros, replayed as the attacker sent them: PostgreSQL, auth on, three keys.

Each defect has its own, wider test beside the code that fixed it; this file is the single
place that proves every report now gets the right answer on the engine where most of them
gave 500. Cancel across reaps (item 7) needs real worker processes: see
tests/integration/test_cancel_survives_faults.py.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import update

from api.auth import create_key
from models.worker_record import WorkerRecord
from tests.factories import add_images

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def keys(app):
    app.extensions["sdfarm"].settings.auth = "on"
    with app.extensions["sdfarm"].sessions() as session:
        made = {name: create_key(session, name, admin=name == "admin") for name in ("alice", "bob", "admin")}
    app.config["owner_ids"] = {name: key.id for name, (key, _secret) in made.items()}
    return {name: {"Authorization": f"Bearer {secret}"} for name, (_key, secret) in made.items()}


def _png(parameters: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _bomb() -> bytes:
    """368 bytes claiming 20,000 x 20,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 20_001 * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _fields(response) -> dict[str, str]:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    return {entry["field"]: entry["reason"] for entry in response.json["error"]["fields"]}


def test_1_redos_png_answers_at_once(client, keys):
    hostile = _png("prompt\n" + 'k: "' + ', k: "' * 40 + ",x,")
    started = time.monotonic()
    response = client.post("/api/v1/png-info", data={"file": (io.BytesIO(hostile), "x.png")}, headers=keys["bob"])
    assert time.monotonic() - started < 2 and response.status_code < 500


def test_2_bomb_in_png_info_is_a_4xx_naming_the_limit(client, keys):
    image = base64.b64encode(_bomb()).decode()
    fields = _fields(client.post("/api/v1/png-info", json={"image": image}, headers=keys["bob"]))
    assert "image" in fields and "pixels" in fields["image"]


def test_3_sign_in_never_redirects_off_site(client, keys):
    secret = keys["alice"]["Authorization"].removeprefix("Bearer ")
    for target in ("/\t/evil.example", "/\n/x"):
        response = client.post(
            "/sign-in", data={"key": secret, "next": target}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get("/sign-in?next=/%0a/x").status_code < 500


def test_4_every_string_is_bounded_and_lists_are_summaries(client, keys):
    big = {"items": [{"prompt": "a", "negative_prompt": "n" * 500_000}]}
    assert "items.0.negative_prompt" in _fields(client.post("/api/v1/jobs", json=big, headers=keys["alice"]))
    long_prompts = {"prompts": ["p" * 1_500] * 100}
    for _ in range(3):
        assert client.post("/api/v1/jobs", json=long_prompts, headers=keys["alice"]).status_code == 202
    page = client.get("/api/v1/jobs?limit=50", headers=keys["alice"])
    assert page.status_code == 200 and len(page.data) < 20_000  # three 150 KB specs are not echoed


@pytest.mark.parametrize("big", [2**31, 2**53, 2**63])
def test_5_large_ids_never_give_500(client, keys, big):
    for url in (
        f"/api/v1/jobs/{big}",
        f"/api/v1/images/{big}",
        f"/api/v1/images/{big}/file",
        f"/api/v1/images/{big}/thumbnail",
    ):
        assert client.get(url, headers=keys["alice"]).status_code == 404, url
    # Filters and cursors past every row: an empty page or a 4xx naming the parameter, never a 500.
    for url in (
        f"/api/v1/images?job_id={big}",
        f"/api/v1/images?cursor={big}",
        f"/api/v1/jobs?cursor={big}",
        f"/?job={big}",
        f"/?before={big}",
    ):
        assert client.get(url, headers=keys["alice"]).status_code in {200, 400, 404, 422}, url
    assert client.post(f"/api/v1/jobs/{big}/cancel", headers=keys["alice"]).status_code == 404
    body = {"prompts": ["a"], "init_image_id": big, "strength": 0.5}
    assert "init_image_id" in _fields(client.post("/api/v1/jobs", json=body, headers=keys["alice"]))


def test_6_nul_is_a_422_naming_the_field(client, keys):
    assert "prompts.0" in _fields(client.post("/api/v1/jobs", json={"prompts": ["a\x00b"]}, headers=keys["alice"]))
    body = {"items": [{"prompt": "a", "negative_prompt": "\x00"}]}
    assert "items.0.negative_prompt" in _fields(client.post("/api/v1/jobs", json=body, headers=keys["alice"]))
    assert "model" in _fields(client.get("/api/v1/images?model=%00", headers=keys["alice"]))
    assert client.get("/?model=%00", headers=keys["alice"]).status_code == 422


def test_8_tenants_see_neither_others_jobs_nor_server_paths(app, client, keys, models_dir):
    with app.extensions["sdfarm"].sessions() as session:
        alice_job = add_images(session, ["a"], status="running", owner=app.config["owner_ids"]["alice"])[0].job_id
        session.add(WorkerRecord(name="cpu0@farm", host="farm", pid=1, device="cpu", model="tiny", state="busy"))
        session.flush()
        session.execute(update(WorkerRecord).values(current_job_id=alice_job))
        session.commit()
    workers = client.get("/api/v1/workers", headers=keys["bob"]).json["workers"]
    assert [worker["current_job_id"] for worker in workers] == [None]
    admin = client.get("/api/v1/workers", headers=keys["admin"]).json["workers"]
    assert [worker["current_job_id"] for worker in admin] == [alice_job]
    models = client.get("/api/v1/models", headers=keys["bob"])
    assert str(models_dir) not in models.get_data(as_text=True)
    assert all(model["queued"] == 0 for model in models.json["models"])


def test_10_seeds_stay_in_range_and_401s_are_limited(client, keys):
    body = {"prompts": ["a"], "num_images": 2, "seed": 2**32 - 1}
    assert "seed" in _fields(client.post("/api/v1/jobs", json=body, headers=keys["alice"]))
    answers = [client.get("/api/v1/jobs", headers={"Authorization": "Bearer sdf_wrong"}).status_code for _ in range(40)]
    assert answers[0] == 401 and answers[-1] == 429
