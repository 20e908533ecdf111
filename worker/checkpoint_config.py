"""Generate the diffusers configs for a single-file SD 1.x, SD 2.x or SDXL checkpoint from the file itself.

A checkpoint holds weights and no configs; diffusers would fetch them from a hub. sdfarm
reads every size from the tensor shapes in the safetensors header (widths, depths, number
of levels, attention depth, vocabulary, context length), and takes the rest from what each
Stable Diffusion release fixes: attention heads (8 per block in SD 1.x, 64-wide heads in
SD 2.x and SDXL and in every CLIP text encoder), GroupNorm with 32 groups, activation
functions, the VAE's latent scale and the noise schedule. The tokenizers are CLIP's own
(`worker/clip`). No weights are read, so this takes milliseconds even for a 7 GB file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.clip.vocabulary import CLIP_VOCAB_SIZE, END_TOKEN, write_clip_tokenizer

Shapes = Mapping[str, list[int]]

UNET = "model.diffusion_model."
VAE = "first_stage_model."
# Where each architecture keeps its text encoders, in which layout, and what the tokenizer pads with.
TEXT_ENCODERS = {
    "sd1": [("text_encoder", "tokenizer", "cond_stage_model.transformer.", "openai", END_TOKEN)],
    "sd2": [("text_encoder", "tokenizer", "cond_stage_model.model.", "openclip", "!")],
    "sdxl": [
        ("text_encoder", "tokenizer", "conditioner.embedders.0.transformer.", "openai", END_TOKEN),
        ("text_encoder_2", "tokenizer_2", "conditioner.embedders.1.model.", "openclip", "!"),
    ],
}
# The latent scale each release trained its VAE for, and its native UNet sample size (latent pixels).
VAE_SCALE = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025}
SAMPLE_SIZE = {"sd1": 64, "sd2": 64, "sdxl": 128}
V_PREDICTION_SAMPLE_SIZE = 96  # SD 2.x v-prediction models are the 768 px ones
_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
HEAD_WIDTH = 64
SD1_HEADS = 8
MAX_NORM_GROUPS = 32


class CheckpointConfigError(ValueError):
    """The checkpoint's tensors do not describe a Stable Diffusion model sdfarm can build configs for."""


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    """The distinct integers that follow `prefix` in the tensor names, sorted."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for key in shapes if (m := pattern.match(key))})


def _shape(shapes: Shapes, key: str) -> list[int]:
    try:
        return list(shapes[key])
    except KeyError:
        raise CheckpointConfigError(f"the checkpoint has no tensor {key!r}") from None


def norm_groups(channels: list[int]) -> int:
    """GroupNorm groups: 32 in every SD release; the largest count that divides narrower (tiny) models."""
    return math.gcd(MAX_NORM_GROUPS, *channels)


def heads_for_width(width: int) -> int:
    """Attention heads of 64 channels each (at least one), as SD 2.x, SDXL and every CLIP encoder use."""
    return max(1, width // HEAD_WIDTH)


def unet_config(shapes: Shapes, architecture: str, prediction_type: str) -> dict[str, Any]:
    """UNet2DConditionModel config: levels, channels, depth and attention read from the original-layout UNet."""
    levels: list[dict[str, int]] = [{"channels": 0, "resnets": 0, "depth": 0}]
    for block in _indices(shapes, UNET + "input_blocks.")[1:]:
        prefix = f"{UNET}input_blocks.{block}."
        if prefix + "0.op.weight" in shapes:  # a downsampler closes the level
            levels.append({"channels": 0, "resnets": 0, "depth": 0})
            continue
        level = levels[-1]
        level["channels"] = _shape(shapes, prefix + "0.out_layers.3.weight")[0]
        level["resnets"] += 1
        level["depth"] = len(_indices(shapes, prefix + "1.transformer_blocks."))
    layers = levels[0]["resnets"]
    if layers == 0 or any(level["resnets"] != layers for level in levels):
        raise CheckpointConfigError("the UNet's levels do not all have the same number of residual blocks")
    channels = [level["channels"] for level in levels]
    attention_level = next((i for i, level in enumerate(levels) if level["depth"]), None)
    if attention_level is None:
        raise CheckpointConfigError("the UNet has no cross-attention")
    attention = f"{UNET}input_blocks.{1 + attention_level * (layers + 1)}.1."
    cross_attention_dim = _shape(shapes, attention + "transformer_blocks.0.attn2.to_k.weight")[1]
    linear_projection = len(_shape(shapes, attention + "proj_in.weight")) == 2
    first_conv = _shape(shapes, UNET + "input_blocks.0.0.weight")
    down = ["CrossAttnDownBlock2D" if level["depth"] else "DownBlock2D" for level in levels]
    config: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": SAMPLE_SIZE[architecture],
        "in_channels": first_conv[1],
        "out_channels": _shape(shapes, UNET + "out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": down,
        "up_block_types": [name.replace("Down", "Up") for name in reversed(down)],
        "transformer_layers_per_block": [max(1, level["depth"]) for level in levels],
        "cross_attention_dim": cross_attention_dim,
        # diffusers calls the number of heads attention_head_dim in these configs.
        "attention_head_dim": SD1_HEADS if architecture == "sd1" else [heads_for_width(c) for c in channels],
        "use_linear_projection": linear_projection,
        "norm_num_groups": norm_groups([first_conv[0], *channels]),
        # SD 2.x attention overflows in fp16 unless its softmax runs in fp32 (diffusers' SD 2.1 config).
        "upcast_attention": architecture == "sd2",
    }
    if architecture == "sd2" and prediction_type == "v_prediction":
        config["sample_size"] = V_PREDICTION_SAMPLE_SIZE
    label_embedding = UNET + "label_emb.0.0.weight"
    if label_embedding in shapes:
        # SDXL conditions on the pooled text embedding plus six size/crop numbers, each embedded.
        pooled = _shape(shapes, TEXT_ENCODERS["sdxl"][1][2] + "text_projection")[1]
        total = _shape(shapes, label_embedding)[1]
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=(total - pooled) // 6,
            projection_class_embeddings_input_dim=total,
        )
    return config


def vae_config(shapes: Shapes, architecture: str, unet_sample_size: int) -> dict[str, Any]:
    """AutoencoderKL config from the original-layout encoder and decoder."""
    levels = _indices(shapes, VAE + "encoder.down.")
    if not levels:
        raise CheckpointConfigError("the checkpoint has no VAE (first_stage_model.encoder)")
    channels = [_shape(shapes, f"{VAE}encoder.down.{i}.block.0.conv2.weight")[0] for i in levels]
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": _shape(shapes, VAE + "encoder.conv_in.weight")[1],
        "out_channels": _shape(shapes, VAE + "decoder.conv_out.weight")[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "block_out_channels": channels,
        "layers_per_block": len(_indices(shapes, VAE + "encoder.down.0.block.")),
        "latent_channels": _shape(shapes, VAE + "decoder.conv_in.weight")[1],
        "norm_num_groups": norm_groups(channels),
        "sample_size": unet_sample_size * 8,
        "scaling_factor": VAE_SCALE[architecture],
    }


def text_encoder_config(shapes: Shapes, architecture: str, prefix: str, layout: str, with_projection: bool):
    """CLIPTextConfig values for an OpenAI-layout (HF names) or OpenCLIP-layout text encoder."""
    if layout == "openai":
        base = prefix + "text_model."
        vocab, width = _shape(shapes, base + "embeddings.token_embedding.weight")
        context = _shape(shapes, base + "embeddings.position_embedding.weight")[0]
        layers = len(_indices(shapes, base + "encoder.layers."))
        intermediate = _shape(shapes, base + "encoder.layers.0.mlp.fc1.weight")[0]
        activation, projection = "quick_gelu", width
    else:
        vocab, width = _shape(shapes, prefix + "token_embedding.weight")
        context = _shape(shapes, prefix + "positional_embedding")[0]
        layers = len(_indices(shapes, prefix + "transformer.resblocks."))
        intermediate = _shape(shapes, prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0]
        activation = "gelu"
        projection_key = prefix + "text_projection"
        projection = _shape(shapes, projection_key)[1] if projection_key in shapes else width
        if architecture == "sd2" and layers == 24:
            # SD 2.x conditions on OpenCLIP-H's penultimate layer; its files still hold all 24
            # (diffusers' converter drops the last, so the diffusers encoder has 23).
            layers = 23
    if vocab != CLIP_VOCAB_SIZE:
        raise CheckpointConfigError(
            f"its text encoder has a vocabulary of {vocab} tokens, not CLIP's {CLIP_VOCAB_SIZE}, so sdfarm's CLIP "
            "tokenizer does not fit it"
        )
    return {
        "architectures": ["CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads_for_width(width),
        "max_position_embeddings": context,
        "hidden_act": activation,
        "projection_dim": projection,
        "layer_norm_eps": 1e-5,
        "bos_token_id": CLIP_VOCAB_SIZE - 2,
        "eos_token_id": CLIP_VOCAB_SIZE - 1,
        "pad_token_id": CLIP_VOCAB_SIZE - 1,
    }


def scheduler_config(architecture: str, prediction_type: str) -> dict[str, Any]:
    """The scheduler each release ships with; jobs pick their own sampler, which inherits this config.

    "leading" timestep spacing is what the releases (and AUTOMATIC1111) step with; it is written
    out because a sampler built from this config would otherwise take its own class's default.
    """
    common = {**_BETAS, "steps_offset": 1, "timestep_spacing": "leading", "prediction_type": prediction_type}
    if architecture == "sdxl":
        return {"_class_name": "EulerDiscreteScheduler", **common}
    if architecture == "sd2":
        return {"_class_name": "DDIMScheduler", **common, "clip_sample": False, "set_alpha_to_one": False}
    return {"_class_name": "PNDMScheduler", **common, "skip_prk_steps": True, "set_alpha_to_one": False}


def pipeline_configs(shapes: Shapes, architecture: str, prediction_type: str) -> dict[str, dict[str, Any]]:
    """Every component's config for the checkpoint, by diffusers subfolder name, plus model_index.json."""
    if architecture not in TEXT_ENCODERS:
        raise CheckpointConfigError(f"no configs for architecture {architecture!r}")
    unet = unet_config(shapes, architecture, prediction_type)
    configs: dict[str, dict[str, Any]] = {
        "unet": unet,
        "vae": vae_config(shapes, architecture, unet["sample_size"]),
        "scheduler": scheduler_config(architecture, prediction_type),
    }
    index: dict[str, Any] = {
        "_class_name": "StableDiffusionXLPipeline" if architecture == "sdxl" else "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", configs["scheduler"]["_class_name"]],
    }
    for folder, tokenizer, prefix, layout, _pad in TEXT_ENCODERS[architecture]:
        with_projection = folder == "text_encoder_2"
        configs[folder] = text_encoder_config(shapes, architecture, prefix, layout, with_projection)
        index[folder] = ["transformers", configs[folder]["architectures"][0]]
        index[tokenizer] = ["transformers", "CLIPTokenizer"]
    if architecture == "sdxl":
        index["force_zeros_for_empty_prompt"] = True
    else:
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    configs["model_index"] = index
    return configs


def write_config_folder(shapes: Shapes, architecture: str, prediction_type: str, out_dir: Path) -> Path:
    """Write a diffusers folder of configs and tokenizers (no weights) that `from_single_file(config=)` reads."""
    configs = pipeline_configs(shapes, architecture, prediction_type)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model_index.json").write_text(json.dumps(configs.pop("model_index"), indent=2))
    for folder, config in configs.items():
        name = "scheduler_config.json" if folder == "scheduler" else "config.json"
        (out_dir / folder).mkdir(exist_ok=True)
        (out_dir / folder / name).write_text(json.dumps(config, indent=2))
    for _folder, tokenizer, _prefix, _layout, pad in TEXT_ENCODERS[architecture]:
        write_clip_tokenizer(out_dir / tokenizer, pad_token=pad)
    return out_dir
