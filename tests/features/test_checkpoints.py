"""Checkpoints: tiny SD 1.x, 2.x and XL as diffusers folders and single LDM-layout files load offline and render."""

from __future__ import annotations

import json

import pytest
import torch

from models.catalog import ModelCatalog
from tests.features.conftest import TINY_MODELS
from tests.features.helpers import difference, render, runner_for
from worker.runner import ModelLoadError


@pytest.mark.parametrize("architecture", ["sd1", "sd2", "sdxl"])
def test_ldm_layout_round_trips_through_diffusers_own_converters(feature_models, architecture):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    from worker.model_build.checkpoint import pipeline_to_ldm

    folder = {"sd1": "tiny-sd1", "sd2": "tiny-sd2", "sdxl": "tiny-xl"}[architecture]
    pipeline_class = StableDiffusionXLPipeline if architecture == "sdxl" else StableDiffusionPipeline
    pipeline = pipeline_class.from_pretrained(feature_models / folder, local_files_only=True)
    ldm = pipeline_to_ldm(pipeline, architecture)
    for component, converted in (
        (pipeline.unet, convert_ldm_unet_checkpoint(ldm, dict(pipeline.unet.config))),
        (pipeline.vae, convert_ldm_vae_checkpoint(ldm, dict(pipeline.vae.config))),
    ):
        original = component.state_dict()
        assert set(converted) == set(original)
        assert all(torch.equal(converted[k].reshape(original[k].shape), original[k]) for k in original)


def test_catalog_reports_kind_architecture_hash_and_defaults(feature_models):
    entries = ModelCatalog(feature_models).entries()
    for name, (architecture, _folder) in TINY_MODELS.items():
        entry = entries[name]
        assert entry.architecture == architecture
        assert entry.kind == ("single_file" if name.endswith("-single") else "diffusers")
        described = entry.describe()
        assert len(described["hash"]) == 10 and int(described["hash"], 16) >= 0
    assert entries["tiny-xl"].defaults.width == 64  # the UNet's own sample size wins over the 1024 of SDXL
    assert entries["tiny-xl-single"].defaults.width == 1024  # a single file has no UNet config: SDXL's native


def test_models_api_lists_architecture_and_hash(client):
    models = {m["name"]: m for m in client.get("/api/v1/models").json["models"]}
    for name, (architecture, _folder) in TINY_MODELS.items():
        assert models[name]["architecture"] == architecture
        assert len(models[name]["hash"]) == 10
        assert set(models[name]["defaults"]) >= {"width", "height", "steps", "sampler"}


@pytest.mark.parametrize("name", ["tiny-sd2-single", "tiny-xl-single", "tiny-sd1-single"])
def test_single_file_alone_loads_offline_and_renders_like_its_diffusers_folder(feature_models, name, tmp_path):
    import shutil

    _architecture, folder = TINY_MODELS[name]
    # Alone in its directory: no configs, tokenizers or diffusers folders anywhere near it.
    shutil.copy(feature_models / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    single = runner_for(tmp_path, name)
    folder_runner = runner_for(feature_models, folder)
    if name == "tiny-xl-single":
        assert type(single.pipeline).__name__ == "StableDiffusionXLPipeline"
    pictures = render(single, prompts=["a cat", "a dog"], negative_prompts=["", "blurry"], seeds=[1, 2])
    same = render(folder_runner, prompts=["a cat", "a dog"], negative_prompts=["", "blurry"], seeds=[1, 2])
    assert len(pictures) == 2 and pictures[0].shape == (64, 64, 3)
    # The same weights in the other layout: the same pictures.
    assert difference(pictures[0], same[0]) < 0.5 and difference(pictures[1], same[1]) < 0.5
    assert difference(pictures[0], pictures[1]) > 1


def test_sdxl_runs_img2img_and_the_samplers_through_its_own_pipelines(feature_models):
    from tests.features.helpers import noise_picture

    runner = runner_for(feature_models, "tiny-xl")
    assert type(runner.pipeline).__name__ == "StableDiffusionXLPipeline"
    (picture,) = render(runner, init_image=noise_picture(1), strength=0.5, sampler="DPM++ 2M Karras")
    assert picture.shape == (64, 64, 3)
    assert type(runner._derived["img2img"]).__name__ == "StableDiffusionXLImg2ImgPipeline"


def test_vae_override_replaces_the_models_vae(feature_models, other_vae, tmp_path):
    import shutil

    from worker.diffusers_runner import DiffusersRunner

    shutil.copytree(feature_models / "tiny-sd1", tmp_path / "with-vae")
    (tmp_path / "with-vae" / "sdfarm.json").write_text(json.dumps({"vae": str(other_vae)}))
    entry = ModelCatalog(tmp_path).get("with-vae")
    assert entry.options.vae == other_vae
    overridden = render(DiffusersRunner(entry, "cpu"))[0]
    original = render(runner_for(feature_models, "tiny-sd1"))[0]
    assert difference(overridden, original) > 1


def test_single_files_that_are_not_sd_checkpoints_fail_with_a_clear_message(tmp_path):
    from worker.loader import load_pipeline
    from worker.preflight import check_model

    (tmp_path / "not-a-model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelLoadError, match="holds no tensors"):
        check_model(ModelCatalog(tmp_path).get("not-a-model"))
    with pytest.raises(ModelLoadError, match="not a Stable Diffusion 1.x, 2.x or XL checkpoint"):
        load_pipeline(ModelCatalog(tmp_path).get("not-a-model"), "cpu")


def test_a_single_file_vae_overrides_a_single_file_models_vae(feature_models, other_vae, tmp_path):
    """The layout people share both in: a checkpoint and a separate VAE file (keys without a prefix)."""
    import shutil

    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from worker.model_build.checkpoint import vae_to_ldm

    vae = AutoencoderKL.from_pretrained(other_vae)
    ldm = vae_to_ldm(vae.state_dict(), dict(vae.config))
    (tmp_path / "vaes").mkdir()
    vae_file = tmp_path / "vaes" / "other-vae.safetensors"
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in ldm.items()}, vae_file)
    shutil.copy(feature_models / "tiny-sd1-single.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors.sdfarm.json").write_text(json.dumps({"vae": "vaes/other-vae.safetensors"}))
    from_files = render(runner_for(tmp_path, "model"))[0]

    shutil.copytree(feature_models / "tiny-sd1", tmp_path / "folder")
    (tmp_path / "folder" / "sdfarm.json").write_text(json.dumps({"vae": str(other_vae)}))
    from_folders = render(runner_for(tmp_path, "folder"))[0]
    original = render(runner_for(feature_models, "tiny-sd1"))[0]
    assert difference(from_files, from_folders) < 0.5
    assert difference(from_files, original) > 1


def test_pickled_checkpoints_are_listed_as_skipped_and_convert_to_safetensors(feature_models, tmp_path):
    import argparse

    from click.testing import CliRunner
    from safetensors.torch import load_file

    from sdfarm.cli import main

    tensors = load_file(feature_models / "tiny-sd1-single.safetensors")
    torch.save({"state_dict": tensors, "global_step": 1}, tmp_path / "community.ckpt")
    environment = {"SDFARM_MODELS_DIR": str(tmp_path), "SDFARM_DATA_DIR": str(tmp_path / "data")}
    listed = CliRunner().invoke(main, ["models", "list"], env=environment)
    assert "skipped community.ckpt" in listed.output and "sdfarm models convert" in listed.output

    converted = CliRunner().invoke(main, ["models", "convert", str(tmp_path / "community.ckpt")], env=environment)
    assert converted.exit_code == 0, converted.output
    pictures = render(runner_for(tmp_path, "community"))[0]
    assert difference(pictures, render(runner_for(feature_models, "tiny-sd1"))[0]) < 0.5
    again = CliRunner().invoke(main, ["models", "convert", str(tmp_path / "community.ckpt")], env=environment)
    assert again.exit_code != 0 and "already exists" in again.output

    # Old training checkpoints carry Python objects (here an argparse Namespace); so do malicious ones.
    torch.save({"state_dict": tensors, "hyper_parameters": argparse.Namespace(lr=1)}, tmp_path / "hidden.ckpt")
    refused = CliRunner().invoke(main, ["models", "convert", str(tmp_path / "hidden.ckpt")], env=environment)
    assert refused.exit_code != 0 and "will not unpickle" in refused.output
    assert not (tmp_path / "hidden.safetensors").exists()
