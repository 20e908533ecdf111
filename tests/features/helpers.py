"""Small helpers for the feature tests: one tiny render, picture comparisons, PNG bytes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from models.catalog import ModelCatalog
from worker.runner import RenderRequest


def request(**overrides) -> RenderRequest:
    """A small, fast render request (64x64, 3 steps) with overrides."""
    values = dict(
        prompts=["a red circle on a blue background"],
        negative_prompts=[""],
        seeds=[7],
        steps=3,
        guidance_scale=7.5,
        width=64,
        height=64,
        sampler="euler",
    )
    values.update(overrides)
    return RenderRequest(**values)


def render(runner, **overrides) -> list[np.ndarray]:
    """Render with `runner` and return the pictures as int arrays."""
    output = runner.generate(request(**overrides), lambda _fraction: None)
    return [np.asarray(picture).astype(int) for picture in output.images]


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two pictures in 8-bit steps."""
    return float(np.abs(a - b).mean())


def runner_for(models: Path, name: str, lora_dir: Path | None = None):
    """A DiffusersRunner on the CPU for a model of the feature models directory."""
    from worker.diffusers_runner import DiffusersRunner

    return DiffusersRunner(ModelCatalog(models).get(name), "cpu", lora_dir=lora_dir)


def noise_picture(seed: int, size: int = 64) -> PILImage.Image:
    """A random RGB picture, as an init image."""
    return PILImage.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def png_bytes(picture: PILImage.Image, pnginfo=None, image_format: str = "PNG") -> bytes:
    """The picture encoded as bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, pnginfo=pnginfo)
    return buffer.getvalue()


def b64(raw: bytes) -> str:
    """Base64 text of raw bytes."""
    return base64.b64encode(raw).decode()
