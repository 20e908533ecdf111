"""Image-to-image: init images validated and stored (JSON base64, data URL, multipart); strength 0 and 1."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from models.job import Job
from tests.features.helpers import b64, difference, noise_picture, png_bytes, render, runner_for


def test_strength_zero_returns_the_init_image_and_strength_one_ignores_it(feature_models):
    runner = runner_for(feature_models, "tiny-sd1")
    first, second = noise_picture(1), noise_picture(2)
    (unchanged,) = render(runner, init_image=first, strength=0.0)
    assert difference(unchanged, np.asarray(first).astype(int)) == 0
    (full_a,) = render(runner, init_image=first, strength=1.0, steps=4)
    (full_b,) = render(runner, init_image=second, strength=1.0, steps=4)
    (half_a,) = render(runner, init_image=first, strength=0.5, steps=4)
    (half_b,) = render(runner, init_image=second, strength=0.5, steps=4)
    # At strength 1 the init image is (almost) entirely replaced by noise; at 0.5 it shapes the result.
    assert difference(full_a, full_b) < 2
    assert difference(half_a, half_b) > 5 * max(difference(full_a, full_b), 0.5)


def test_small_strength_still_runs_one_step_and_the_init_is_resized(feature_models):
    runner = runner_for(feature_models, "tiny-sd1")
    (picture,) = render(runner, init_image=noise_picture(3, size=96), strength=0.01, steps=3)
    assert picture.shape == (64, 64, 3)


def _stored_init(settings, job_id: int) -> PILImage.Image:
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    with sessions() as session:
        key = session.scalar(select(Job.init_image_key).where(Job.id == job_id))
    assert key and key.startswith("inputs/")
    return PILImage.open(io.BytesIO(LocalImageStore(settings.resolved_object_dir).read(key)))


def test_json_and_data_url_init_images_are_stored_and_set_the_size(client, settings):
    raw = png_bytes(noise_picture(4, size=72))
    for encoded in (b64(raw), "data:image/png;base64," + b64(raw)):
        response = client.post(
            "/api/v1/jobs", json={"prompts": ["a cat"], "model": "tiny-sd1", "init_image": encoded, "strength": 0.4}
        )
        assert response.status_code == 202, response.json
        image = client.get(f"/api/v1/images?job_id={response.json['id']}").json["images"][0]
        assert (image["width"], image["height"], image["strength"]) == (72, 72, 0.4)
        assert "init_image" not in response.json["spec"]  # the bytes live in the object store, not the row
        assert _stored_init(settings, response.json["id"]).size == (72, 72)


def test_multipart_upload_with_a_job_part(client, settings):
    import json

    raw = png_bytes(noise_picture(5), image_format="JPEG")
    data = {
        "job": json.dumps({"prompts": ["a dog"], "model": "tiny-sd1", "strength": 0.6, "width": 64, "height": 64}),
        "init_image": (io.BytesIO(raw), "dog.jpg", "image/jpeg"),
    }
    response = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    assert _stored_init(settings, response.json["id"]).format == "PNG"


def test_bad_init_images_are_rejected_with_the_field_named(client):
    def submit(**fields):
        return client.post("/api/v1/jobs", json={"prompts": ["a"], "model": "tiny-sd1", **fields})

    cases = [
        submit(init_image="not base64!!"),
        submit(init_image=b64(b"GIF89a this is not an image")),
        submit(init_image=b64(png_bytes(noise_picture(6), image_format="GIF"))),
        submit(init_image=b64(png_bytes(noise_picture(7, size=32)))),
        submit(strength=0.5),
        submit(init_image_id=999999),
    ]
    for response in cases:
        assert response.status_code == 422, response.json
        assert response.json["error"]["fields"][0]["field"] in {"init_image", "strength", "init_image_id"}
    missing_job = client.post(
        "/api/v1/jobs", data={"init_image": (io.BytesIO(b"x"), "a.png")}, content_type="multipart/form-data"
    )
    assert missing_job.status_code == 422 and missing_job.json["error"]["fields"][0]["field"] == "job"
