"""Dataset exports: the API on both databases, the runner called directly, the files read back by the
formats' own readers (Hugging Face `datasets` image folder, the `webdataset` library, zipfile + PIL)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import update

from api.auth import create_key
from models.export import Export, ExportStatus
from models.image_store import LocalImageStore
from models.infotext import parse_infotext
from tests.factories import add_finished_job
from worker.exporter import ExportRunner


@pytest.fixture
def farm(app):
    """The app's database sessions and object store."""
    return app.extensions["sdfarm"]


def runner(farm, name: str = "exports@test") -> ExportRunner:
    """An export runner on the test farm (what the supervisor runs in its background loop)."""
    return ExportRunner(farm.sessions, farm.store, name, lease_seconds=5.0)


def run_export(client, farm, body: dict, headers=None) -> dict:
    """Submit, let one runner pass make it, and return the finished export."""
    response = client.post("/api/v1/exports", json=body, headers=headers)
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/api/v1/exports/{response.json['id']}"
    assert response.json["status"] == "queued"
    assert runner(farm).run_once() == 1
    return client.get(f"/api/v1/exports/{response.json['id']}", headers=headers).json


def download(client, url: str, target: Path, headers=None) -> Path:
    """Fetch a download URL into `target`."""
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    target.write_bytes(response.get_data())
    response.close()
    return target


def test_imagefolder_reads_back_with_the_datasets_loader(client, farm, tmp_path):
    with farm.sessions() as session:
        job = add_finished_job(session, farm.store, 7, prompt="a blue square")
        add_finished_job(session, farm.store, 3, prompt="not this job")
    export = run_export(client, farm, {"format": "imagefolder", "job_id": job.id})
    assert (export["status"], export["images"], export["done"], export["progress"]) == ("succeeded", 7, 7, 1.0)
    assert [f["name"] for f in export["files"]] == ["dataset.zip"] and export["files"][0]["images"] == 7
    archive = download(client, export["files"][0]["url"], tmp_path / "dataset.zip")
    folder = tmp_path / "dataset"
    zipfile.ZipFile(archive).extractall(folder)

    import datasets

    dataset = datasets.load_dataset("imagefolder", data_dir=str(folder), split="train")
    assert len(dataset) == 7
    rows = sorted(dataset, key=lambda row: row["index"])
    assert [row["text"] for row in rows] == [f"a blue square {i}" for i in range(7)]
    first = rows[0]
    assert first["image"].size == (64, 64)
    assert (first["seed"], first["steps"], first["guidance_scale"], first["sampler"]) == (
        1000,
        20,
        7.5,
        "DPM++ 2M Karras",
    )
    assert (first["width"], first["height"], first["model"], first["job_id"]) == (64, 64, "tiny", job.id)
    assert first["negative_prompt"] == "blurry" and json.loads(first["loras"]) == []


def test_webdataset_shards_read_back_with_the_webdataset_library(client, farm, tmp_path):
    with farm.sessions() as session:
        job = add_finished_job(session, farm.store, 7, prompt="a green triangle")
    export = run_export(client, farm, {"format": "webdataset", "job_id": job.id, "shard_size": 3})
    assert export["status"] == "succeeded"
    assert [(f["name"], f["images"]) for f in export["files"]] == [
        ("shard-000000.tar", 3),
        ("shard-000001.tar", 3),
        ("shard-000002.tar", 1),
    ]
    shards = [download(client, f["url"], tmp_path / f["name"]) for f in export["files"]]

    import webdataset as wds

    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil"))
    assert len(samples) == 7
    assert [s["txt"] for s in samples] == [f"a green triangle {i}" for i in range(7)]
    assert all(s["png"].size == (64, 64) for s in samples)
    record = samples[2]["json"]
    assert (record["seed"], record["index"], record["job_id"], record["model"]) == (1002, 2, job.id, "tiny")
    assert parse_infotext(record["infotext"])["seed"] == 1002


def test_zip_of_pngs_with_their_infotext(client, farm, tmp_path):
    with farm.sessions() as session:
        job = add_finished_job(session, farm.store, 4, prompt="a yellow circle")
    ids = [image["id"] for image in client.get(f"/api/v1/images?job_id={job.id}").json["images"]]
    chosen = sorted(ids)[:2]
    export = run_export(client, farm, {"format": "zip", "image_ids": chosen})
    assert export["images"] == 2 and export["files"][0]["name"] == "images.zip"
    archive = zipfile.ZipFile(download(client, export["files"][0]["url"], tmp_path / "images.zip"))
    assert archive.namelist() == [
        f"{chosen[0]:012d}.png",
        f"{chosen[0]:012d}.txt",
        f"{chosen[1]:012d}.png",
        f"{chosen[1]:012d}.txt",
    ]
    picture = PILImage.open(io.BytesIO(archive.read(f"{chosen[0]:012d}.png")))
    beside = archive.read(f"{chosen[0]:012d}.txt").decode()
    assert picture.info["parameters"] == beside
    assert parse_infotext(beside)["prompt"] == "a yellow circle 0"


def test_gallery_filters_select_through_one_query(client, farm, tmp_path):
    with farm.sessions() as session:
        add_finished_job(session, farm.store, 3, prompt="a lighthouse at dusk")
        add_finished_job(session, farm.store, 2, prompt="a castle", model="shapes")
    assert run_export(client, farm, {"format": "zip", "q": "lighthouse"})["images"] == 3
    assert run_export(client, farm, {"format": "zip", "model": "shapes"})["images"] == 2
    assert run_export(client, farm, {"format": "zip", "q": "castle", "model": "tiny"})["images"] == 0
    assert run_export(client, farm, {"format": "zip", "size": "64x64", "seed": 1001})["images"] == 2
    assert run_export(client, farm, {"format": "zip", "all": True})["images"] == 5


def test_a_board_and_a_rating_export_their_images_and_never_deleted_ones(client, farm):
    """The whole flow of the issue through the API: star some, put them on a board, export the board."""
    with farm.sessions() as session:
        job = add_finished_job(session, farm.store, 6, prompt="a red circle")
    ids = [image["id"] for image in client.get(f"/api/v1/images?job_id={job.id}").json["images"]]
    client.post("/api/v1/images/bulk", json={"action": "rate", "rating": 1, "image_ids": ids[:4]})
    client.post("/api/v1/images/bulk", json={"action": "rate", "rating": -1, "image_ids": ids[4:]})
    board = client.post("/api/v1/boards", json={"name": "good"}).json["id"]
    body = {"action": "add_to_board", "board_id": board, "query": {"job": job.id, "rating": "1"}}
    assert client.post("/api/v1/images/bulk", json=body).json["matched"] == 4
    client.post("/api/v1/images/bulk", json={"action": "delete", "image_ids": [ids[0]]})
    assert run_export(client, farm, {"format": "zip", "board_id": board})["images"] == 3
    assert run_export(client, farm, {"format": "zip", "rating": 1})["images"] == 3
    assert run_export(client, farm, {"format": "zip", "rating": -1})["images"] == 2
    assert run_export(client, farm, {"format": "zip", "all": True})["images"] == 5
    # An export takes what the gallery's list shows for the same filters (one query builds both).
    for exported, listed in [
        ({"board_id": board, "rating": 1}, f"board_id={board}&rating=1"),
        ({"job_id": job.id, "q": "circle", "rating": -1}, f"job_id={job.id}&q=circle&rating=-1"),
    ]:
        shown = {image["id"] for image in client.get(f"/api/v1/images?{listed}").json["images"]}
        export = run_export(client, farm, {"format": "zip", **exported})
        assert export["images"] == len(shown) > 0, (exported, shown)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "tarball", "all": True}, "format"),
        ({"format": "zip"}, "body"),
        ({"format": "zip", "all": True, "shard_size": 10}, "body"),
        ({"format": "webdataset", "all": True, "shard_size": 0}, "shard_size"),
        ({"format": "zip", "image_ids": []}, "image_ids"),
        ({"format": "zip", "image_ids": [0]}, "image_ids.0"),
        ({"format": "zip", "image_ids": list(range(1, 10_002))}, "image_ids"),
        ({"format": "zip", "q": "x" * 201}, "q"),
        ({"format": "zip", "size": "big"}, "size"),
        ({"format": "zip", "rating": 5}, "rating"),
        ({"format": "zip", "board_id": 3}, "board_id"),  # no such board (of the caller's)
        ({"format": "zip", "all": True, "path": "/etc"}, "path"),
    ],
)
def test_bad_requests_name_the_field(client, body, field):
    response = client.post("/api/v1/exports", json=body)
    assert response.status_code == 422, response.json
    assert field in [f["field"] for f in response.json["error"]["fields"]], response.json


def test_unknown_export_and_file_are_404(client, farm):
    assert client.get("/api/v1/exports/999").status_code == 404
    created = client.post("/api/v1/exports", json={"format": "zip", "all": True}).json
    queued = client.get(f"/api/v1/exports/{created['id']}/files/1")
    assert queued.status_code == 404 and "queued" in queued.json["error"]["message"]
    runner(farm).run_once()
    assert client.get(f"/api/v1/exports/{created['id']}/files/2").status_code == 404
    assert client.get(f"/api/v1/exports/{created['id']}/files/1").status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tenants_export_and_see_only_their_own(app, client, farm, tmp_path):
    farm.settings.auth = "on"
    with farm.sessions() as session:
        alice_key, alice = create_key(session, "alice")
        _, bob = create_key(session, "bob")
        _, root = create_key(session, "root", admin=True)
        add_finished_job(session, farm.store, 3, owner_key_id=alice_key.id, prompt="alice's")
        add_finished_job(session, farm.store, 2, prompt="someone else's")
    as_alice, as_bob, as_root = ({"Authorization": f"Bearer {s}"} for s in (alice, bob, root))
    mine = run_export(client, farm, {"format": "zip", "all": True}, headers=as_alice)
    assert mine["images"] == 3
    assert run_export(client, farm, {"format": "zip", "all": True}, headers=as_bob)["images"] == 0
    assert run_export(client, farm, {"format": "zip", "all": True}, headers=as_root)["images"] == 5
    assert client.get(mine["url"], headers=as_bob).status_code == 404
    listed = {
        name: client.get("/api/v1/exports", headers=key).json["exports"]
        for name, key in (("alice", as_alice), ("root", as_root))
    }
    assert [e["id"] for e in listed["alice"]] == [mine["id"]] and len(listed["root"]) == 3
    assert client.get(mine["files"][0]["url"], headers=as_bob).status_code == 404
    assert client.get(mine["files"][0]["url"], headers=as_root).status_code == 200
    assert client.get(mine["files"][0]["url"]).status_code == 401


class Died(BaseException):
    """The runner's process went away (not an error the runner could catch and record)."""


class DyingStore(LocalImageStore):
    """The store as seen by a runner whose host dies right after its second upload."""

    uploads: list[str] = []

    def put_fileobj(self, key, source):
        super().put_fileobj(key, source)
        self.uploads.append(key)
        if len(self.uploads) == 2:
            raise Died()


def test_a_crashed_export_is_claimed_again_and_its_old_files_deleted(client, farm):
    with farm.sessions() as session:
        add_finished_job(session, farm.store, 5)
    export_id = client.post("/api/v1/exports", json={"format": "webdataset", "all": True, "shard_size": 2}).json["id"]
    dying_store = DyingStore(farm.store.root)
    dying_store.uploads = []
    with pytest.raises(Died):
        ExportRunner(farm.sessions, dying_store, "exports@dying", lease_seconds=5.0).run_once()
    assert runner(farm).run_once() == 0  # its lease is still live: nobody else takes it
    with farm.sessions() as session:
        row = session.get(Export, export_id)
        assert (row.status, row.attempts, len(row.files)) == (ExportStatus.RUNNING, 1, 2)
        session.execute(update(Export).where(Export.id == export_id).values(lease_expires_at=row.created_at))
        session.commit()
    assert runner(farm).run_once() == 1
    export = client.get(f"/api/v1/exports/{export_id}").json
    assert (export["status"], export["attempts"], export["images"]) == ("succeeded", 2, 5)
    assert [f["images"] for f in export["files"]] == [2, 2, 1]
    assert all(farm.store.local_path(key) is None for key in dying_store.uploads)  # the dead attempt's files


def test_runners_racing_for_one_export_make_it_once(client, farm):
    with farm.sessions() as session:
        add_finished_job(session, farm.store, 3)
    export_id = client.post("/api/v1/exports", json={"format": "zip", "all": True}).json["id"]
    results = []
    barrier = threading.Barrier(4)

    def race(number: int) -> None:
        barrier.wait()
        results.append(runner(farm, f"exports@host{number}").run_once())

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 1]
    export = client.get(f"/api/v1/exports/{export_id}").json
    assert (export["status"], export["attempts"]) == ("succeeded", 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_export_into_an_s3_store_downloads_through_a_presigned_url(client, farm, s3_server, monkeypatch, tmp_path):
    import uuid

    import requests

    from models.s3_store import S3ImageStore
    from tests.s3_server import aws_env, bucket_keys
    from tests.s3_server import client as s3_client

    for name, value in aws_env().items():
        monkeypatch.setenv(name, value)
    bucket = f"farm-{uuid.uuid4().hex[:10]}"
    s3_client(s3_server.url).create_bucket(Bucket=bucket)
    farm.store = S3ImageStore(bucket, "farm/", s3_server.url)
    with farm.sessions() as session:
        add_finished_job(session, farm.store, 5, prompt="a red circle")
    export = run_export(client, farm, {"format": "imagefolder", "all": True})
    assert (export["status"], export["images"]) == ("succeeded", 5)
    (item,) = export["files"]
    assert any(key.startswith("farm/exports/") for key in bucket_keys(s3_client(s3_server.url), bucket))
    response = client.get(item["url"])
    if response.status_code == 302:  # SDFARM_OBJECT_REDIRECTS: the bytes come from the store itself
        data = requests.get(response.headers["Location"], timeout=10).content
    else:
        assert response.status_code == 200
        data = response.get_data()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len([name for name in archive.namelist() if name.endswith(".png")]) == 5
