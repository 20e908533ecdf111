"""The built-in shapes demo model: its data, its colour judge, the shipped weights and the training script."""

from __future__ import annotations

import os

# Before diffusers/transformers import: the tests must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.demo_model import SHIPPED_MODEL_DIR
from worker.demo_model.evaluate import judge_colours, load_pipeline
from worker.demo_model.shapes import COLOURS, PALETTE, SHAPES, make_batch, prompt, random_specs, render, to_uint8
from worker.demo_model.train import train_demo_model

# Every colour once as a shape and once as a background, each pair different.
EIGHT_CASES = [
    ("red", "circle", "blue"),
    ("green", "square", "yellow"),
    ("blue", "triangle", "white"),
    ("yellow", "circle", "black"),
    ("white", "square", "purple"),
    ("black", "triangle", "orange"),
    ("purple", "circle", "green"),
    ("orange", "square", "red"),
]


def test_shapes_are_deterministic_and_never_camouflaged() -> None:
    first, captions = make_batch(64, torch.Generator().manual_seed(3))
    again, captions_again = make_batch(64, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and captions == captions_again
    assert first.shape == (64, 3, 64, 64) and first.min() >= -1 and first.max() <= 1
    specs = random_specs(500, torch.Generator().manual_seed(4))
    assert all(spec.colour != spec.background for spec in specs)
    assert {spec.shape for spec in specs} == set(SHAPES) and {spec.colour for spec in specs} == set(COLOURS)


def test_judge_reads_the_true_colours_of_rendered_shapes() -> None:
    specs = random_specs(300, torch.Generator().manual_seed(5))
    images = to_uint8(render(specs)).numpy()
    assert [judge_colours(image) for image in images] == [(s.background, s.colour) for s in specs]


def test_judge_reports_a_plain_image_as_having_no_shape() -> None:
    plain = np.full((64, 64, 3), PALETTE["green"], dtype=np.uint8)
    assert judge_colours(plain) == ("green", "none")


@pytest.mark.skipif(not (SHIPPED_MODEL_DIR / "model_index.json").exists(), reason="shipped weights not built yet")
def test_shipped_model_draws_the_prompted_colours_in_one_batch() -> None:
    pipeline = load_pipeline(SHIPPED_MODEL_DIR)
    prompts = [prompt(colour, shape, background) for colour, shape, background in EIGHT_CASES]
    images = pipeline(
        prompts,
        num_inference_steps=20,
        guidance_scale=7.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (8, 64, 64, 3)
    judged = [judge_colours(image) for image in images]
    assert judged == [(background, colour) for colour, _, background in EIGHT_CASES]


def test_training_a_few_steps_writes_a_loadable_model(tmp_path: Path) -> None:
    out = train_demo_model(tmp_path / "model", vae_steps=3, unet_steps=3, batch_size=4, seed=0, log=lambda _: None)
    for part in ("tokenizer", "text_encoder", "unet", "vae", "scheduler"):
        assert (out / part).is_dir(), part
    assert list((out / "unet").glob("*.safetensors"))
    scaling = json.loads((out / "vae" / "config.json").read_text())["scaling_factor"]
    assert scaling > 0 and scaling != 0.18215  # measured from the data, not SD's default
    pipeline = load_pipeline(out)
    image = pipeline(
        "a red circle on a blue background", num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (64, 64)


def test_shipped_defaults_name_a_known_sampler() -> None:
    from models.samplers import find_sampler

    defaults = json.loads((SHIPPED_MODEL_DIR / "sdfarm.json").read_text())
    assert find_sampler(defaults["sampler"]) is not None
    assert defaults["steps"] >= 15 and defaults["guidance_scale"] <= 7.5
