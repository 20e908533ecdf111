"""Fixtures for the generation features: tiny SD 1.x, 2.x and XL models as diffusers folders and single files.

The single files have no configs beside them: the loader generates them from the weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis
import torch

from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.features.lora_factory import make_tiny_lora
from tests.integration.conftest import farm  # noqa: F401  (the real farm, reused by the farm feature tests)

# Model name -> (architecture, the diffusers folder holding the same weights).
TINY_MODELS = {
    "tiny-sd1": ("sd1", "tiny-sd1"),
    "tiny-sd2": ("sd2", "tiny-sd2"),
    "tiny-xl": ("sdxl", "tiny-xl"),
    "tiny-sd1-single": ("sd1", "tiny-sd1"),
    "tiny-sd2-single": ("sd2", "tiny-sd2"),
    "tiny-xl-single": ("sdxl", "tiny-xl"),
}


@pytest.fixture(scope="session")
def feature_models(models_dir, tmp_path_factory) -> Path:
    """A models directory with tiny SD 1.x/2.x/XL diffusers folders and a single-file copy of each."""
    from worker.model_build.tiny_any import build_tiny, save_as_single_file

    directory = tmp_path_factory.mktemp("feature-models")
    shutil.copytree(models_dir / "tiny", directory / "tiny-sd1")
    build_tiny("sd2", directory / "tiny-sd2")
    build_tiny("sdxl", directory / "tiny-xl")
    for name, (architecture, folder) in TINY_MODELS.items():
        if name.endswith("-single"):
            save_as_single_file(directory / folder, architecture, directory / f"{name}.safetensors")
    return directory


@pytest.fixture(scope="session")
def other_vae(feature_models, tmp_path_factory) -> Path:
    """A tiny VAE with other random weights, for the VAE override."""
    from worker.model_build.tiny import tiny_vae

    folder = tmp_path_factory.mktemp("vae-override") / "vae"
    torch.manual_seed(123)
    tiny_vae(64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lora_dir(models_dir, tmp_path_factory) -> Path:
    """A LoRA directory with one random adapter made for the tiny SD 1.x model."""
    directory = tmp_path_factory.mktemp("loras")
    make_tiny_lora(models_dir / "tiny", directory / "shapes-style.safetensors", seed=1)
    make_tiny_lora(models_dir / "tiny", directory / "other-style.safetensors", seed=2)
    return directory


@pytest.fixture
def settings(tmp_path, database_url, redis_server, feature_models, lora_dir):
    """Like the shared fixture, with the feature models directory and the LoRA directory."""
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(database_url)
    return make_settings(tmp_path, database_url, redis_server.url, feature_models, lora_dir=lora_dir)
