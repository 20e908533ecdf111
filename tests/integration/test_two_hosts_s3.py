"""Two worker "hosts" that share only the database, Redis and one S3 endpoint.

Each host has its own data directory and host name, as two machines would; the API runs from a
third directory. Images, thumbnails and init images go through the S3 store (moto's server over
HTTP, behind a proxy the test can take off the network), and the API serves every one of them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select

from models import Image, Job, WorkerRecord
from models.db import make_engine, make_session_factory
from models.settings import Settings
from sdfarm.cli import main
from sdfarm.farm_processes import WorkerFleet, settings_env
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.farm_harness import fresh_postgres_database, postgres_admin_url
from tests.integration.helpers import wait_for_job
from tests.s3_server import StoreProxy, aws_env, bucket_keys, client

PREFIX = "farm"


@dataclass
class TwoHostFarm:
    """The API's settings and client, the two hosts' fleets, and the store's bucket and proxy."""

    settings: Settings
    client: object
    sessions: object
    hosts: dict[str, WorkerFleet]
    bucket: str
    proxy: StoreProxy
    s3: object


@pytest.fixture(scope="module")
def farm(tmp_path_factory, redis_server, models_dir, s3_server) -> Iterator[TwoHostFarm]:
    """PostgreSQL where available (SQLite otherwise), Redis, an S3 bucket, and two worker hosts."""
    from api import create_app

    root = tmp_path_factory.mktemp("two-hosts")
    database = fresh_postgres_database() if postgres_admin_url() else None
    url = database.__enter__() if database else f"sqlite:///{root / 'control' / 'sdfarm.db'}"
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(url)
    proxy = StoreProxy(s3_server.port).up()
    bucket = f"two-hosts-{uuid.uuid4().hex[:8]}"
    s3 = client(s3_server.url)
    s3.create_bucket(Bucket=bucket)
    store = dict(object_store=f"s3://{bucket}/{PREFIX}", s3_endpoint_url=proxy.url, max_batch=2)
    settings = make_settings(root / "control", url, redis_server.url, models_dir, **store)
    hosts = {}
    for name in ("host-a", "host-b"):
        host_settings = make_settings(root / name, url, redis_server.url, models_dir, host_name=name, **store)
        hosts[name] = WorkerFleet(host_settings, root / f"{name}.log", "--gpus", "none", **aws_env())
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in aws_env().items():
            patch.setenv(variable, value)  # the API's own credentials, from the standard chain
        started = time.time()
        hosts["host-a"].start(expect_workers=0)
        hosts["host-b"].start(expect_workers=0)
        hosts["host-b"].wait_ready(2, started, timeout=180)
        app = create_app(settings)
        try:
            yield TwoHostFarm(
                settings, app.test_client(), make_session_factory(make_engine(url)), hosts, bucket, proxy, s3
            )
        finally:
            for fleet in hosts.values():
                fleet.stop()
            proxy.down()
            app.extensions["sdfarm"].engine.dispose()
            if database is not None:
                database.__exit__(None, None, None)


def _job_objects(farm: TwoHostFarm, job_id: int) -> set[str]:
    return bucket_keys(farm.s3, farm.bucket, f"{PREFIX}/jobs/{job_id:08d}/")


def _row_objects(farm: TwoHostFarm, job_id: int) -> set[str]:
    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job_id)))
    return {f"{PREFIX}/{key}" for row in rows for key in (row.object_key, row.thumb_key) if key}


def test_a_job_runs_on_both_hosts_and_the_api_serves_every_file_from_s3(farm):
    client = farm.client
    job = client.post(
        "/api/v1/jobs", json={"prompts": ["a red circle", "a blue square"], "num_images": 4, "steps": 4}
    ).json
    done = wait_for_job(client, job["id"])
    assert done["status"] == "succeeded" and done["succeeded"] == 8, done
    # Both machines rendered part of it, each under its own name.
    assert {image["worker"] for image in done["images"]} == {"cpu0@host-a", "cpu0@host-b"}
    for image in done["images"]:
        png = client.get(image["url"])
        assert png.status_code == 200 and png.mimetype == "image/png"
        assert hashlib.sha256(png.data).hexdigest() == image["sha256"]
        thumbnail = client.get(image["thumbnail_url"])
        assert thumbnail.status_code == 200 and PILImage.open(io.BytesIO(thumbnail.data)).format == "WEBP"
    assert _job_objects(farm, job["id"]) == _row_objects(farm, job["id"])

    # Inpainting: the API stores the init image and the mask in S3, the workers read them from there.
    first = client.get(done["images"][0]["url"]).data
    mask = PILImage.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    inputs = {
        "init_image": base64.b64encode(first).decode(),
        "mask_image": base64.b64encode(buffer.getvalue()).decode(),
    }
    img2img = client.post("/api/v1/jobs", json={"prompts": ["in green"], "num_images": 4, "steps": 4, **inputs}).json
    assert wait_for_job(client, img2img["id"])["status"] == "succeeded"
    with farm.sessions() as session:
        row = session.get(Job, img2img["id"])
        keys = {"init-image": row.init_image_key, "mask-image": row.mask_image_key}
    for route, key in keys.items():
        served = client.get(f"/api/v1/jobs/{img2img['id']}/{route}")
        assert served.status_code == 200 and served.mimetype == "image/png"
        assert served.data == farm.s3.get_object(Bucket=farm.bucket, Key=f"{PREFIX}/{key}")["Body"].read()
        assert PILImage.open(io.BytesIO(served.data)).size == (64, 64)
        assert client.get(f"/api/v1/jobs/{job['id']}/{route}").status_code == 404  # text-to-image: none
    assert bucket_keys(farm.s3, farm.bucket, f"{PREFIX}/inputs/") == {f"{PREFIX}/{key}" for key in keys.values()}
    assert _job_objects(farm, img2img["id"]) == _row_objects(farm, img2img["id"])

    # Nothing landed on the hosts' own disks, and each host reports its own name.
    for name, fleet in farm.hosts.items():
        assert not (fleet.settings.data_dir / "objects").exists(), name
    with farm.sessions() as session:
        assert {(r.name, r.host) for r in session.scalars(select(WorkerRecord))} == {
            ("cpu0@host-a", "host-a"),
            ("cpu0@host-b", "host-b"),
        }


def test_files_by_presigned_redirect_and_the_store_origin_in_the_csp(farm):
    from api import CONTENT_SECURITY_POLICY, create_app

    job = farm.client.post("/api/v1/jobs", json={"prompts": ["a green triangle"], "steps": 4}).json
    image = wait_for_job(farm.client, job["id"])["images"][0]
    assert farm.client.get("/").headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in aws_env().items():
            patch.setenv(variable, value)
        redirecting = create_app(farm.settings.model_copy(update={"object_redirects": True}))
    browser = redirecting.test_client()
    answer = browser.get(image["url"] + "?download=1")
    assert answer.status_code == 302 and answer.location.startswith(farm.proxy.url + "/")
    assert answer.headers["Cache-Control"] == "private, max-age=150"
    fetched = requests.get(answer.location, timeout=10)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == image["sha256"]
    assert "attachment" in fetched.headers["Content-Disposition"]
    policy = browser.get("/").headers["Content-Security-Policy"]
    assert f"img-src 'self' {farm.proxy.url} data: blob:" in policy
    redirecting.extensions["sdfarm"].engine.dispose()


def test_store_down_at_save_time_the_batch_runs_again_and_nothing_is_orphaned(farm):
    logs = {name: fleet.log_path for name, fleet in farm.hosts.items()}
    failures_before = sum(path.read_text().count("could not write image") for path in logs.values())
    farm.proxy.down()
    try:
        job = farm.client.post("/api/v1/jobs", json={"prompts": ["a yellow star"], "num_images": 2, "steps": 4}).json
        deadline = time.monotonic() + 90
        # The saver retries each PUT (botocore's standard retries), then gives the images up to their lease.
        while sum(path.read_text().count("could not write image") for path in logs.values()) == failures_before:
            assert time.monotonic() < deadline, "the worker never reported the failed write"
            time.sleep(0.3)
    finally:
        farm.proxy.up()
    done = wait_for_job(farm.client, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job["id"])))
    # A PUT still retrying when the store came back succeeded; an image whose PUTs had given up
    # waited for its lease to expire, was put back by the reaper and rendered again: alone (the
    # reaper's mark on a batch it took back, whose try it does not count) or as a counted retry.
    assert any(row.run_alone or row.attempts >= 2 for row in rows), [(r.attempts, r.run_alone) for r in rows]
    for image in done["images"]:
        assert hashlib.sha256(farm.client.get(image["url"]).data).hexdigest() == image["sha256"]
    assert _job_objects(farm, job["id"]) == _row_objects(farm, job["id"])


def test_a_worker_with_a_wrong_bucket_or_a_name_in_use_is_refused_at_start(farm, tmp_path):
    env = {**settings_env(farm.hosts["host-a"].settings), **aws_env(), "SDFARM_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    wrong = {**env, "SDFARM_OBJECT_STORE": "s3://no-such-bucket/farm", "SDFARM_HOST_NAME": "host-c"}
    result = runner.invoke(main, ["worker", "--gpus", "none"], env=wrong)
    assert result.exit_code == 1
    assert "SDFARM_OBJECT_STORE: bucket 'no-such-bucket' does not exist at http://127.0.0.1" in result.output
    # host-a is live: a second machine calling itself host-a is refused, by name and with the fix.
    result = runner.invoke(main, ["worker", "--gpus", "none", "--host-name", "host-a"], env=env)
    assert result.exit_code == 1
    assert "worker name already in use by a live worker: cpu0@host-a" in result.output
    assert "--host-name or SDFARM_HOST_NAME" in result.output
