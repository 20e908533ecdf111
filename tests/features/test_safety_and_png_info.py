"""Safety flags are kept and recorded (never a black image); png-info reads our metadata and A1111's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from models.image import Image
from tests.factories import add_images, image_row
from tests.features.helpers import b64, noise_picture, png_bytes, request, runner_for
from worker.encoding import encode_png, infotext_for
from worker.results import Rendered, ResultStore


def parse_png_text(png: bytes) -> str:
    """The infotext a PNG carries."""
    return PILImage.open(io.BytesIO(png)).text["parameters"]


A1111_SAMPLE = (
    "masterpiece, a castle on a hill, <lora:detail:0.8>\n"
    "Negative prompt: lowres, blurry\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    'Lora hashes: "detail: 0123456789ab", Version: v1.10.1'
)


def test_a_flagged_image_is_kept_and_marked(feature_models):
    runner = runner_for(feature_models, "tiny-sd1")
    assert runner.safety_check is None  # the tiny model ships no checker: nothing happens
    runner.safety_check = lambda pictures: [index == 1 for index in range(len(pictures))]
    output = runner.generate(request(prompts=["a", "b"], negative_prompts=["", ""], seeds=[1, 2]), lambda _f: None)
    assert output.nsfw == [False, True]
    assert np.asarray(output.images[1]).std() > 1  # the picture itself, not a black square


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nsfw_reaches_the_row_and_the_metadata(app):
    farm = app.extensions["sdfarm"]
    with farm.sessions() as session:
        item = add_images(session, ["a red circle"], status="running", lease_token="token", nsfw=True)[0]
        session.expunge(item)
    results = ResultStore(farm.sessions, farm.store, "3b1c9d0e2a")
    assert results.save_batch("token", [Rendered(item, noise_picture(1), 0.1)]) == 1
    with farm.sessions() as session:
        row = session.get(Image, item.id)
        assert (row.status, row.nsfw) == ("succeeded", True)
        assert "NSFW: True" in parse_png_text(farm.store.read(row.object_key))
    assert "NSFW" not in infotext_for(image_row())


def test_png_info_round_trips_our_metadata(client):
    item = image_row()
    png = encode_png(noise_picture(2), infotext_for(item))
    by_upload = client.post(
        "/api/v1/png-info", data={"file": (io.BytesIO(png), "x.png")}, content_type="multipart/form-data"
    )
    by_json = client.post("/api/v1/png-info", json={"image": b64(png)})
    assert by_upload.status_code == 200 and by_upload.json == by_json.json
    parsed = by_upload.json["parameters"]
    assert (parsed["prompt"], parsed["negative_prompt"]) == ("a red circle", "blurry")
    assert (parsed["seed"], parsed["steps"], parsed["sampler"], parsed["guidance_scale"]) == (
        42,
        20,
        "DPM++ 2M Karras",
        7.5,
    )
    assert (parsed["width"], parsed["height"], parsed["clip_skip"], parsed["model_hash"]) == (64, 64, 2, "3b1c9d0e2a")
    assert parsed["params"]["Lora hashes"] == "shapes-style: abcdef0123"
    assert parsed["params"]["Denoising strength"] == "0.6"


def test_png_info_parses_an_automatic1111_picture(client):
    metadata = PngInfo()
    metadata.add_text("parameters", A1111_SAMPLE)
    response = client.post("/api/v1/png-info", json={"image": b64(png_bytes(noise_picture(3), metadata))})
    parsed = response.json["parameters"]
    assert response.json["infotext"] == A1111_SAMPLE
    assert parsed["prompt"] == "masterpiece, a castle on a hill, <lora:detail:0.8>"
    assert parsed["sampler"] == "DPM++ 2M Karras"  # A1111 1.9+ writes the schedule type apart
    assert (parsed["steps"], parsed["seed"], parsed["width"], parsed["height"]) == (28, 1234567890, 512, 768)
    assert parsed["params"]["Lora hashes"] == "detail: 0123456789ab"


def test_png_info_without_metadata_and_bad_input(client):
    plain = client.post("/api/v1/png-info", json={"image": b64(png_bytes(noise_picture(4)))})
    assert plain.status_code == 200 and plain.json == {"infotext": None, "parameters": None, "generator": None}
    assert client.post("/api/v1/png-info", json={"image": b64(b"not a picture")}).status_code == 422
    assert client.post("/api/v1/png-info", json={"image": "%%%"}).status_code == 422
    assert client.post("/api/v1/png-info", data={}, content_type="multipart/form-data").status_code == 422


def test_png_info_and_multipart_are_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").json
    assert "multipart/form-data" in document["paths"]["/api/v1/png-info"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert "architecture" in document["components"]["schemas"]["ModelOut"]["properties"]
