"""Through the real farm (API, Redis, a real worker process): image-to-image, inpainting, LoRA and sampler jobs."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from models.catalog import short_hash
from models.image import Image
from models.infotext import parse_infotext
from tests.features.helpers import noise_picture, png_bytes
from tests.features.lora_factory import make_tiny_lora
from tests.integration.helpers import wait_for_job


def _picture(client, image: dict) -> tuple[np.ndarray, dict]:
    picture = PILImage.open(io.BytesIO(client.get(image["url"]).data))
    picture.load()
    return np.asarray(picture.convert("RGB")).astype(int), parse_infotext(picture.text["parameters"])


def test_img2img_lora_and_sampler_jobs_through_the_farm(farm, models_dir):
    client = farm.client
    lora_file = make_tiny_lora(models_dir / "tiny", farm.settings.data_dir / "loras" / "farm-style.safetensors")
    init = noise_picture(11)
    common = {"prompts": ["a red circle"], "num_images": 2, "steps": 3, "seed": 5, "model": "tiny"}
    img2img = client.post(
        "/api/v1/jobs",
        data={
            "job": json.dumps({**common, "strength": 0.0, "scheduler": "DPM++ 2M Karras"}),
            "init_image": (io.BytesIO(png_bytes(init)), "init.png", "image/png"),
        },
        content_type="multipart/form-data",
    )
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, :32] = 255  # repaint the left half
    inpaint = client.post(
        "/api/v1/jobs",
        data={
            "job": json.dumps({**common, "strength": 1.0}),
            "init_image": (io.BytesIO(png_bytes(init)), "init.png", "image/png"),
            "mask_image": (io.BytesIO(png_bytes(PILImage.fromarray(mask, mode="L"))), "mask.png", "image/png"),
        },
        content_type="multipart/form-data",
    )
    plain = client.post("/api/v1/jobs", json=common)
    lora = client.post("/api/v1/jobs", json={**common, "loras": [{"name": "farm-style", "weight": 1.0}]})
    submitted = (("i", img2img), ("m", inpaint), ("p", plain), ("l", lora))
    assert {response.status_code for _, response in submitted} == {202}, [r.json for _, r in submitted]

    jobs = {name: wait_for_job(client, response.json["id"]) for name, response in submitted}
    assert all(job["status"] == "succeeded" for job in jobs.values()), jobs

    pixels, info = _picture(client, jobs["i"]["images"][0])
    assert np.abs(pixels - np.asarray(init).astype(int)).mean() == 0  # strength 0: the init image itself
    assert info["sampler"] == "DPM++ 2M Karras" and info["strength"] == "0.0"

    painted, _ = _picture(client, jobs["m"]["images"][0])
    original = np.asarray(init).astype(int)
    assert np.abs(painted[:, 32:] - original[:, 32:]).mean() == 0  # outside the mask: the init image itself
    assert np.abs(painted[:, :32] - original[:, :32]).mean() > 20  # inside: painted anew

    plain_pixels, _ = _picture(client, jobs["p"]["images"][0])
    lora_pixels, lora_info = _picture(client, jobs["l"]["images"][0])
    assert np.abs(plain_pixels - lora_pixels).mean() > 1  # same seed and prompt; only the adapter differs
    digest = short_hash(lora_file)
    assert lora_info["params"]["Lora hashes"] == f"farm-style: {digest}"
    assert jobs["l"]["images"][0]["loras"] == [{"name": "farm-style", "weight": 1.0, "hash": digest}]

    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id.in_([j["id"] for j in jobs.values()]))))
    # A batch (one lease token) never holds items of two of these jobs: adapters and samplers differ.
    by_token: dict[str, set[int]] = {}
    for row in rows:
        by_token.setdefault(row.lease_token, set()).add(row.job_id)
    assert all(len(job_ids) == 1 for job_ids in by_token.values())

    # A finished image can be the init image of the next job.
    again = client.post(
        "/api/v1/jobs",
        json={**common, "num_images": 1, "init_image_id": jobs["p"]["images"][0]["id"], "strength": 0.5},
    )
    assert again.status_code == 202, again.json
    assert wait_for_job(client, again.json["id"])["status"] == "succeeded"
