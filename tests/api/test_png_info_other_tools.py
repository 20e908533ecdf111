"""png-info reads other tools' metadata (through sd-parsers): PNGs written in each tool's own format."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 7,
            "steps": 25,
            "cfg": 6.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "fog", "clip": ["4", 1]}},
}
# ComfyUI's UI graph: links are [id, from node, from slot, to node, to slot, type].
COMFY_WORKFLOW = {
    "nodes": [],
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 6, 0, 3, 1, "CONDITIONING"],
        [3, 7, 0, 3, 2, "CONDITIONING"],
        [4, 5, 0, 3, 3, "LATENT"],
        [5, 4, 1, 6, 0, "CLIP"],
        [6, 4, 1, 7, 0, "CLIP"],
    ],
}
TOOLS = {
    "InvokeAI": (
        {
            "invokeai_metadata": json.dumps(
                {
                    "positive_prompt": "a castle on a hill",
                    "negative_prompt": "blurry",
                    "seed": 42,
                    "steps": 30,
                    "cfg_scale": 7.5,
                    "scheduler": "euler",
                    "width": 512,
                    "height": 768,
                    "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1"},
                    "generation_mode": "txt2img",
                }
            )
        },
        {"prompt": "a castle on a hill", "negative_prompt": "blurry", "seed": 42, "steps": 30, "width": 512},
    ),
    "ComfyUI": (
        {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)},
        {"prompt": "a lighthouse at dusk", "negative_prompt": "fog", "seed": 7, "steps": 25, "height": 768},
    ),
    "NovelAI": (
        {
            "Software": "NovelAI",
            "Source": "Stable Diffusion 1D44365E",
            "Description": "a fox in the snow",
            "Comment": json.dumps(
                {"steps": 28, "sampler": "k_euler_ancestral", "seed": 99, "scale": 11.0, "uc": "lowres"}
            ),
        },
        {"prompt": "a fox in the snow", "negative_prompt": "lowres", "seed": 99, "steps": 28},
    ),
}


def _png(chunks: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 32), "purple").save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_farm_png_info_reads_other_tools(client, tool):
    chunks, expected = TOOLS[tool]
    response = client.post("/api/v1/png-info", data={"file": (io.BytesIO(_png(chunks)), "x.png")})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["generator"] == tool
    for field, value in expected.items():
        assert body["parameters"][field] == value, (field, body["parameters"])
    assert body["infotext"].startswith(expected["prompt"])


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_a1111_png_info_reads_other_tools(client, tool):
    chunks, expected = TOOLS[tool]
    encoded = base64.b64encode(_png(chunks)).decode()
    body = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + encoded}).json
    assert body["parameters"]["Prompt"] == expected["prompt"]
    assert body["parameters"]["Seed"] == str(expected["seed"]) and f"Seed: {expected['seed']}" in body["info"]
    assert body["items"] == {k: v for k, v in chunks.items()}


def test_a_picture_without_metadata_and_a_broken_chunk(client):
    plain = _png({})
    assert client.post("/api/v1/png-info", data={"file": (io.BytesIO(plain), "x.png")}).json == {
        "infotext": None,
        "parameters": None,
        "generator": None,
    }
    broken = _png({"invokeai_metadata": "{not json", "prompt": "[1, 2"})
    response = client.post("/api/v1/png-info", data={"file": (io.BytesIO(broken), "x.png")})
    assert response.status_code == 200 and response.json["parameters"] is None
