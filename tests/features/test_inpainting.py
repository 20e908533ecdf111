"""Inpainting: a mask says what to repaint; any model inpaints, and 9-channel inpainting models only inpaint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from models.catalog import ModelCatalog
from models.db import make_engine, make_session_factory
from models.image import Image
from models.image_store import LocalImageStore
from models.job import Job
from tests.features.helpers import b64, difference, noise_picture, png_bytes, render, runner_for


def left_half_mask(size: int = 64) -> PILImage.Image:
    """White (repaint) on the left half, black (keep) on the right."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[:, : size // 2] = 255
    return PILImage.fromarray(mask, mode="L")


def halves(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return picture[:, :32], picture[:, 32:]


@pytest.fixture(scope="module")
def inpainting_models(tmp_path_factory):
    """A tiny 9-channel inpainting model as a diffusers folder and as a single file, made by the CLI."""
    from click.testing import CliRunner

    from sdfarm.cli import main

    directory = tmp_path_factory.mktemp("inpainting-models")
    arguments = ["model", "make-tiny", str(directory / "tiny-inpaint"), "--seed", "3", "--inpainting", "--single-file"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    (directory / "tiny-inpaint.safetensors").rename(directory / "tiny-inpaint-single.safetensors")
    return directory


@pytest.mark.parametrize("name", ["tiny-sd1", "tiny-xl"])
def test_only_the_masked_part_is_repainted(feature_models, name):
    runner = runner_for(feature_models, name)
    init = noise_picture(21)
    original = np.asarray(init).astype(int)
    first, second = (
        render(runner, init_image=init, mask_image=left_half_mask(), strength=1.0, steps=4, seeds=[seed])[0]
        for seed in (1, 2)
    )
    pipeline_name = "StableDiffusionXLInpaintPipeline" if name == "tiny-xl" else "StableDiffusionInpaintPipeline"
    assert type(runner._derived["inpaint"]).__name__ == pipeline_name
    assert runner._derived["inpaint"].unet is runner.pipeline.unet  # the loaded weights, not a copy
    for picture in (first, second):
        repainted, kept = halves(picture)
        assert difference(kept, halves(original)[1]) == 0  # the init image's own pixels
        assert difference(repainted, halves(original)[0]) > 20
    assert difference(halves(first)[0], halves(second)[0]) > 1  # the seed decides what is painted


def test_a_nine_channel_inpainting_model_loads_from_both_layouts_and_only_inpaints(inpainting_models):
    entries = ModelCatalog(inpainting_models).entries()
    assert entries["tiny-inpaint"].inpainting and entries["tiny-inpaint-single"].inpainting
    init, mask = noise_picture(22), left_half_mask()
    folder = runner_for(inpainting_models, "tiny-inpaint")
    single = runner_for(inpainting_models, "tiny-inpaint-single")
    assert folder.inpainting and single.pipeline.unet.config.in_channels == 9
    from_folder = render(folder, init_image=init, mask_image=mask, strength=1.0, steps=3)[0]
    from_single = render(single, init_image=init, mask_image=mask, strength=1.0, steps=3)[0]
    assert difference(from_folder, from_single) < 0.5
    assert difference(halves(from_folder)[1], halves(np.asarray(init).astype(int))[1]) == 0
    with pytest.raises(ValueError, match="inpainting model"):
        render(folder)


def _stored(settings, job_id: int, column) -> PILImage.Image:
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    with sessions() as session:
        key = session.scalar(select(column).where(Job.id == job_id))
    return PILImage.open(io.BytesIO(LocalImageStore(settings.resolved_object_dir).read(key)))


def test_masks_are_validated_stored_and_never_batched_with_plain_img2img(client, settings):
    init, mask = b64(png_bytes(noise_picture(23))), b64(png_bytes(left_half_mask()))
    job = {"prompts": ["a cat"], "model": "tiny-sd1", "init_image": init}
    masked = client.post("/api/v1/jobs", json={**job, "mask_image": mask})
    assert masked.status_code == 202, masked.json
    assert "mask_image" not in masked.json["spec"]
    stored = _stored(settings, masked.json["id"], Job.mask_image_key)
    assert stored.mode == "L" and np.asarray(stored)[:, :32].min() == 255
    uploaded = client.post(
        "/api/v1/jobs",
        data={
            "job": json.dumps({"prompts": ["a cat"], "model": "tiny-sd1"}),
            "init_image": (io.BytesIO(png_bytes(noise_picture(23))), "init.png"),
            "mask_image": (io.BytesIO(png_bytes(left_half_mask())), "mask.png"),
        },
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 202, uploaded.json
    plain = client.post("/api/v1/jobs", json=job)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    with sessions() as session:
        keys = {
            job_id: session.scalar(select(Image.batch_key).where(Image.job_id == job_id))
            for job_id in (masked.json["id"], plain.json["id"])
        }
    assert keys[masked.json["id"]] != keys[plain.json["id"]]

    def rejected(**fields) -> dict:
        response = client.post("/api/v1/jobs", json={"prompts": ["a"], "model": "tiny-sd1", **fields})
        assert response.status_code == 422, response.json
        return response.json["error"]["fields"][0]

    stored_before = sorted((settings.resolved_object_dir / "inputs").iterdir())
    without_init = rejected(mask_image=mask)
    assert without_init["field"] == "mask_image" and "init_image" in without_init["reason"]
    wrong_size = rejected(init_image=init, mask_image=b64(png_bytes(left_half_mask(96))))
    assert wrong_size["field"] == "mask_image" and "96x96" in wrong_size["reason"]
    assert rejected(init_image=init, mask_image="%%%")["field"] == "mask_image"
    # A refused job leaves nothing behind: its init image is stored only once every check has passed.
    assert sorted((settings.resolved_object_dir / "inputs").iterdir()) == stored_before


def test_an_inpainting_model_refuses_jobs_without_a_mask(client, inpainting_models):
    import shutil

    installed = client.application.extensions["sdfarm"].catalog.models_dir / "tiny-inpaint"
    shutil.copytree(inpainting_models / "tiny-inpaint", installed)
    try:
        init = b64(png_bytes(noise_picture(24)))
        for job in ({}, {"init_image": init}):
            response = client.post("/api/v1/jobs", json={"prompts": ["a cat"], "model": "tiny-inpaint", **job})
            assert response.status_code == 422
            field = response.json["error"]["fields"][0]
            assert field["field"] == "mask_image" and "inpainting model" in field["reason"]
        objects = client.application.extensions["sdfarm"].settings.resolved_object_dir
        assert not (objects / "inputs").exists() or not list((objects / "inputs").iterdir())
        masked = {"init_image": init, "mask_image": b64(png_bytes(left_half_mask()))}
        response = client.post("/api/v1/jobs", json={"prompts": ["a cat"], "model": "tiny-inpaint", **masked})
        assert response.status_code == 202, response.json
        models = {m["name"]: m for m in client.get("/api/v1/models").json["models"]}
        assert models["tiny-inpaint"]["inpainting"] is True and models["tiny-sd1"]["inpainting"] is False
    finally:
        shutil.rmtree(installed)


def test_models_list_names_architecture_hash_and_inpainting(inpainting_models, tmp_path):
    from click.testing import CliRunner

    from models.catalog import short_hash
    from sdfarm.cli import main

    environment = {"SDFARM_MODELS_DIR": str(inpainting_models), "SDFARM_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["models", "list"], env=environment)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("tiny-inpaint-single "))
    digest = short_hash(inpainting_models / "tiny-inpaint-single.safetensors")
    assert f"single_file  sd1-inpainting  {digest}  512x512" in line
    refused = CliRunner().invoke(
        main, ["model", "make-tiny", str(tmp_path / "x"), "--architecture", "sdxl", "--inpainting"]
    )
    assert refused.exit_code != 0 and "SD 1.x models only" in refused.output
