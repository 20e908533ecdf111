"""The tiny model: real SD architecture, deterministic, offline, same loading path as real weights."""

from __future__ import annotations

import json

import numpy as np

from models.catalog import ModelEntry, short_hash
from worker.diffusers_runner import DiffusersRunner
from worker.model_build.tiny import build_tiny_model
from worker.runner import RenderRequest


def test_tiny_model_has_the_real_component_classes(models_dir):
    index = json.loads((models_dir / "tiny" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    vae = json.loads((models_dir / "tiny" / "vae" / "config.json").read_text())
    assert len(vae["block_out_channels"]) == 4  # three downsamples: the usual 8x
    assert list((models_dir / "tiny").rglob("*.safetensors"))


def test_build_is_deterministic(tmp_path, models_dir):
    build_tiny_model(tmp_path / "again")
    assert short_hash(tmp_path / "again") == short_hash(models_dir / "tiny")


def test_runner_renders_batches_with_per_image_seeds(models_dir):
    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cpu")
    request = RenderRequest(["a red cat", "a dog", "a tree"], ["", "ugly", ""], [1, 2, 1], 4, 7.5, 64, 64, "euler_a")
    progress: list[float] = []
    output = runner.generate(request, progress.append)
    assert [image.size for image in output.images] == [(64, 64)] * 3 and output.nan == [False] * 3
    assert progress[-1] == 1.0 and progress == sorted(progress)
    arrays = [np.asarray(image, dtype=int) for image in output.images]
    assert np.abs(arrays[0] - arrays[1]).mean() > 1  # different prompt and seed, different image
    again = runner.generate(request.subset(0, 1), lambda _: None)
    assert np.abs(np.asarray(again.images[0], dtype=int) - arrays[0]).max() <= 1
