"""Configs for single-file checkpoints, generated from the weights: checked against the real SD releases.

Full-size SD 1.5, SD 2.1 and SDXL components are built on PyTorch's meta device (shapes
without memory) from the published diffusers configs, written out in the original layout,
and the configs sdfarm derives from those shapes must rebuild models of exactly the
published parameter counts (which are counted here independently of those configs).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from models.catalog import ModelCatalog, safetensors_header
from tests.features.helpers import difference, render, runner_for
from worker.model_build.release import UNETS
from worker.runner import ModelLoadError

# Published diffusers configs (the parts that differ from the defaults) and parameter counts.
# What diffusers publishes for each release, and the parameter counts of its components.
PARAMETERS = {
    "sd1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}


def _release_shapes(architecture: str) -> dict[str, list[int]]:
    """Tensor shapes of a full-size checkpoint in the original layout, built without allocating weights."""
    from worker.model_build.checkpoint import pipeline_to_ldm
    from worker.model_build.release import release_components

    with torch.device("meta"):
        state = pipeline_to_ldm(release_components(architecture), architecture)
    return {key: list(tensor.shape) for key, tensor in state.items()}


@pytest.mark.parametrize("architecture", ["sd1", "sd2", "sdxl"])
def test_configs_derived_from_full_size_shapes_rebuild_the_releases(architecture):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from worker.checkpoint_config import pipeline_configs

    prediction = "v_prediction" if architecture == "sd2" else "epsilon"
    configs = pipeline_configs(_release_shapes(architecture), architecture, prediction)
    for key, value in UNETS[architecture].items():
        assert configs["unet"][key] == value, key
    with torch.device("meta"):
        built = {
            "unet": UNet2DConditionModel.from_config(configs["unet"]),
            "vae": AutoencoderKL.from_config(configs["vae"]),
        }
        for folder in ("text_encoder", "text_encoder_2"):
            if folder in configs:
                model_class = CLIPTextModelWithProjection if folder == "text_encoder_2" else CLIPTextModel
                built[folder] = model_class(CLIPTextConfig(**configs[folder]))
    counts = {name: sum(p.numel() for p in model.parameters()) for name, model in built.items()}
    assert counts == PARAMETERS[architecture]
    assert configs["vae"]["scaling_factor"] == (0.13025 if architecture == "sdxl" else 0.18215)
    assert configs["unet"]["sample_size"] * 8 == {"sd1": 512, "sd2": 768, "sdxl": 1024}[architecture]
    assert configs["scheduler"]["prediction_type"] == prediction


def test_clip_tokenizer_numbers_tokens_like_openai_clip(tmp_path):
    from transformers import CLIPTokenizer

    from worker.clip.vocabulary import write_clip_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path / "tokenizer"))
    assert len(tokenizer) == 49408
    # The ids every SD 1.x user has seen for diffusers' example prompt.
    ids = tokenizer("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert tokenizer(",").input_ids == [49406, 267, 49407]
    open_clip = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path / "tokenizer_2", pad_token="!"))
    assert open_clip.pad_token_id == 0 and tokenizer.pad_token_id == 49407


def test_prediction_type_comes_from_the_defaults_file_then_the_checkpoint_metadata(feature_models, tmp_path):
    from safetensors.torch import load_file, save_file

    from worker.preflight import check_model

    shutil.copy(feature_models / "tiny-sd2-single.safetensors", tmp_path / "v.safetensors")
    entry = ModelCatalog(tmp_path).get("v")
    assert entry.options.prediction_type == "v_prediction" and entry.defaults.width == 768  # SD 2.1
    tensors = load_file(tmp_path / "v.safetensors")
    save_file(tensors, tmp_path / "base.safetensors", metadata={"modelspec.prediction_type": "epsilon"})
    assert safetensors_header(tmp_path / "base.safetensors")[1] == {"modelspec.prediction_type": "epsilon"}
    entry = ModelCatalog(tmp_path).get("base")
    assert entry.options.prediction_type == "epsilon" and entry.defaults.width == 512  # SD 2.x base
    runner = runner_for(tmp_path, "base")
    assert runner.pipeline.scheduler.config.prediction_type == "epsilon"
    (tmp_path / "base.safetensors.sdfarm.json").write_text(json.dumps({"prediction_type": "v"}))
    assert ModelCatalog(tmp_path).get("base").options.prediction_type == "v_prediction"
    (tmp_path / "base.safetensors.sdfarm.json").write_text(json.dumps({"prediction_type": "flow"}))
    with pytest.raises(ModelLoadError, match="prediction_type 'flow'.*epsilon or v_prediction"):
        check_model(ModelCatalog(tmp_path).get("base"))


def test_a_checkpoint_with_its_own_vocabulary_needs_a_config_folder_and_loads_with_one(tmp_path):
    from diffusers import StableDiffusionPipeline

    from models.catalog import SHAPES_MODEL_DIR
    from worker.model_build.checkpoint import save_single_file
    from worker.preflight import check_model

    # The demo model has its own small vocabulary, so CLIP's tokenizer does not fit its single file.
    pipeline = StableDiffusionPipeline.from_pretrained(SHAPES_MODEL_DIR, local_files_only=True)
    save_single_file(pipeline, "sd1", tmp_path / "own-vocab.safetensors")
    with pytest.raises(ModelLoadError, match=r"vocabulary of 574 tokens.*own-vocab.safetensors.sdfarm.json"):
        check_model(ModelCatalog(tmp_path).get("own-vocab"))
    (tmp_path / "own-vocab.safetensors.sdfarm.json").write_text(json.dumps({"config": str(SHAPES_MODEL_DIR)}))
    check_model(ModelCatalog(tmp_path).get("own-vocab"))
    shutil.copytree(SHAPES_MODEL_DIR, tmp_path / "shapes-folder")
    prompt = {"prompts": ["a red circle on a blue background"], "sampler": "DDIM", "steps": 10}
    single = render(runner_for(tmp_path, "own-vocab"), **prompt)[0]
    folder = render(runner_for(tmp_path, "shapes-folder"), **prompt)[0]
    assert difference(single, folder) < 0.5
