"""The A1111 API driven by a real third-party client (`webuiapi` from PyPI) against a farm with two
real CPU workers, over HTTP, with auth on: models, samplers, options, txt2img, img2img, png-info."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests
import webuiapi
from PIL import Image as PILImage
from sqlalchemy import select

from api import create_app
from api.auth import create_key
from models.db import make_engine, make_session_factory
from models.image import Image
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.farm_harness import fresh_postgres_database, postgres_admin_url
from tests.gallery.browser import serve


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def a1111(request, tmp_path_factory, redis_server, models_dir) -> Iterator[dict]:
    """The farm's HTTP server (auth on), two CPU workers, and an API key."""
    data_dir = tmp_path_factory.mktemp(f"a1111-{request.param}")
    database = None
    if request.param == "postgresql":
        if not postgres_admin_url():
            pytest.skip("SDFARM_TEST_POSTGRES_URL is not set (.ci/run sets it)")
        database = fresh_postgres_database()
        url = database.__enter__()
    else:
        url = f"sqlite:///{data_dir / 'sdfarm.db'}"
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(url)
    settings = make_settings(data_dir, url, redis_server.url, models_dir, auth="on")
    fleet = WorkerFleet(settings, data_dir / "worker.log", "--gpus", "none", "--cpu-workers", "2").start(2)
    app = create_app(settings)
    with app.extensions["sdfarm"].sessions() as session:
        secret = create_key(session, "a1111-client")[1]
    try:
        with serve(app) as base_url:
            yield {
                "base_url": base_url,
                "secret": secret,
                "sessions": make_session_factory(make_engine(url)),
                "api": webuiapi.WebUIApi(baseurl=f"{base_url}/sdapi/v1", username="me", password=secret),
            }
    finally:
        fleet.stop()
        app.extensions["sdfarm"].engine.dispose()
        if database is not None:
            database.__exit__(None, None, None)


def test_models_samplers_schedulers_and_options(a1111):
    api = a1111["api"]
    titles = api.util_get_model_names()
    tiny = next(t for t in titles if t.startswith("tiny ["))
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= set(api.util_get_sampler_names())
    assert "karras" in api.util_get_scheduler_names()
    assert api.get_upscalers() == [] and api.get_sd_vae() == [] and api.get_prompt_styles() == []
    assert api.get_scripts() == {"txt2img": [], "img2img": []}
    api.util_set_model("tiny", find_closest=False)  # sets options.sd_model_checkpoint by title
    assert api.util_get_current_model() == tiny
    assert api.get_progress()["state"]["job_count"] == 0


def test_txt2img_fans_out_over_every_worker_and_answers_as_a1111(a1111):
    api = a1111["api"]
    result = api.txt2img(
        prompt="a red circle", negative_prompt="blurry", seed=1234, steps=2, cfg_scale=5.0,
        width=64, height=64, batch_size=4, n_iter=4, sampler_name="Euler a",
    )  # fmt: skip
    assert len(result.images) == 16 and all(image.size == (64, 64) for image in result.images)
    info = result.info
    assert info["seed"] == 1234 and info["all_seeds"] == list(range(1234, 1250))
    assert info["all_prompts"] == ["a red circle"] * 16 and info["sampler_name"] == "Euler a"
    assert "Seed: 1234" in info["infotexts"][0] and "Negative prompt: blurry" in info["infotexts"][0]
    assert result.images[0].info["parameters"] == info["infotexts"][0]  # the PNG carries its infotext
    assert "subseed" not in info["sdfarm"]["ignored"]  # the client sent -1: nothing was dropped
    assert result.parameters["batch_size"] == 4 and result.parameters["n_iter"] == 4
    job_id = info["sdfarm"]["job_id"]
    with a1111["sessions"]() as session:
        workers = {row.worker for row in session.scalars(select(Image).where(Image.job_id == job_id))}
    assert len(workers) == 2, "one request should use every worker"  # 4 batches over 2 workers
    # The images are also in the farm's own API (and so in the gallery).
    job = requests.get(
        f"{a1111['base_url']}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {a1111['secret']}"}, timeout=10
    ).json()
    assert job["succeeded"] == 16


def test_random_seed_and_ignored_subseed(a1111):
    result = a1111["api"].txt2img(prompt="a blue square", seed=-1, subseed=77, steps=2, width=64, height=64)
    assert 0 <= result.info["seed"] < 2**32 and result.info["seed"] != -1
    assert "subseed" in result.info["sdfarm"]["ignored"]


def test_img2img_and_inpainting(a1111):
    api = a1111["api"]
    start = PILImage.new("RGB", (64, 64), "green")
    result = api.img2img(
        images=[start], prompt="a yellow triangle", denoising_strength=0.6, steps=4, width=64, height=64, seed=5
    )
    assert len(result.images) == 1 and result.info["denoising_strength"] == 0.6
    assert "Denoising strength: 0.6" in result.info["infotexts"][0]
    mask = PILImage.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    painted = api.img2img(images=[start], mask_image=mask, prompt="a hole", steps=4, width=64, height=64, seed=5)
    assert len(painted.images) == 1


def test_png_info_reads_the_farms_pictures(a1111):
    api = a1111["api"]
    image = api.txt2img(prompt="a lighthouse", seed=99, steps=2, width=64, height=64).image
    read = api.png_info(image)
    assert read.json["info"].startswith("a lighthouse") and "Seed: 99" in read.json["info"]
    assert read.json["parameters"]["Prompt"] == "a lighthouse" and read.json["parameters"]["Seed"] == "99"
    assert read.json["parameters"]["Size-1"] == "64"


def test_bad_requests_name_a1111_fields_and_auth_is_checked(a1111):
    base, secret = a1111["base_url"], a1111["secret"]
    wrong = webuiapi.WebUIApi(baseurl=f"{base}/sdapi/v1", username="me", password="sdf_wrong")
    with pytest.raises(RuntimeError) as refused:
        wrong.txt2img(prompt="x", steps=2, width=64, height=64)
    assert refused.value.args[0] == 401
    api = a1111["api"]
    for call, field in (
        (dict(width=65), "width"),
        (dict(sampler_name="Nope"), "sampler_name"),
        (dict(enable_hr=True), "enable_hr"),
        (dict(scheduler="exponential"), "scheduler"),
        (dict(override_settings={"sd_model_checkpoint": "missing"}), "override_settings.sd_model_checkpoint"),
        (dict(cfg_scale=99), "cfg_scale"),
    ):
        with pytest.raises(RuntimeError) as error:
            api.txt2img(**{"prompt": "x", "steps": 2, "width": 64, "height": 64, **call})
        assert error.value.args[0] == 422, call
        assert f'"field":"{field}' in error.value.args[1].replace(" ", ""), (call, error.value.args[1])
    bearer = requests.get(f"{base}/sdapi/v1/sd-models", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert bearer.status_code == 200
    challenge = requests.get(f"{base}/sdapi/v1/sd-models", timeout=10)
    assert challenge.status_code == 401 and challenge.headers["WWW-Authenticate"].startswith("Basic")


def test_idempotency_key_on_txt2img(a1111):
    base, secret = a1111["base_url"], a1111["secret"]
    body = {"prompt": "a green square", "steps": 2, "width": 64, "height": 64, "seed": 3}
    headers = {"Idempotency-Key": "a1111-retry", "Authorization": f"Bearer {secret}"}
    first = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=headers, timeout=300).json()
    again = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=headers, timeout=300).json()
    assert first["images"] == again["images"]
    assert '"job_id": ' in first["info"] and first["info"] == again["info"]
    other = requests.post(f"{base}/sdapi/v1/txt2img", json={**body, "seed": 4}, headers=headers, timeout=300)
    assert other.status_code == 422 and other.json()["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert PILImage.open(io.BytesIO(base64.b64decode(first["images"][0]))).size == (64, 64)


def test_progress_and_interrupt_of_a_waiting_request(a1111):
    api = a1111["api"]
    answer: dict = {}

    def generate() -> None:
        try:
            answer["result"] = api.txt2img(prompt="a long job", steps=2, width=64, height=64, batch_size=4, n_iter=10)
        except RuntimeError as error:
            answer["error"] = error

    thread = threading.Thread(target=generate)
    thread.start()
    deadline = time.monotonic() + 180
    progress = api.get_progress()
    while progress["state"]["job_no"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        progress = api.get_progress()
    assert progress["state"]["job_count"] == 40 and 0 < progress["progress"] < 1
    assert progress["state"]["job"].startswith("job ")
    api.interrupt()
    thread.join(timeout=120)
    result = answer["result"]
    assert 1 <= len(result.images) < 40  # what was done before the interrupt
    assert result.info["sdfarm"]["canceled"] == 40 - len(result.images) - len(result.info["sdfarm"]["failed"])
    assert api.get_progress()["state"]["job_count"] == 0
