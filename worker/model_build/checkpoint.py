"""Write a diffusers model as one original-layout (LDM) `.safetensors` checkpoint.

The inverse of diffusers' single-file converters (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`):
the key names and tensor layouts are those of the checkpoints people download for
SD 1.x (`cond_stage_model.transformer.`), SD 2.x (OpenCLIP, `cond_stage_model.model.`) and
SDXL (`conditioner.embedders.0.transformer.` and `conditioner.embedders.1.model.`). sdfarm
uses it to make single-file copies of its tiny models, so the single-file loader is tested
on files of the real layout without downloading any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

Tensors = dict[str, torch.Tensor]

_RESNET_NAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet_suffix(suffix: str) -> str:
    for new, old in _RESNET_NAMES:
        if suffix.startswith(new + "."):
            return old + suffix[len(new) :]
    return suffix


def unet_to_ldm(state: Tensors, config: dict[str, Any]) -> Tensors:
    """A diffusers UNet2DConditionModel state dict in the original `model.diffusion_model.` layout."""
    layers = config["layers_per_block"]
    mapping: dict[str, str] = {}  # diffusers prefix -> LDM prefix, with the kind of module
    kinds: dict[str, str] = {}
    for top, ldm in _UNET_TOP.items():
        mapping[top], kinds[top] = ldm, "plain"
    block = 1
    for b in range(len(config["down_block_types"])):
        for layer in range(layers):
            mapping[f"down_blocks.{b}.resnets.{layer}"] = f"input_blocks.{block}.0"
            kinds[f"down_blocks.{b}.resnets.{layer}"] = "resnet"
            mapping[f"down_blocks.{b}.attentions.{layer}"] = f"input_blocks.{block}.1"
            kinds[f"down_blocks.{b}.attentions.{layer}"] = "plain"
            block += 1
        if f"down_blocks.{b}.downsamplers.0.conv.weight" in state:
            mapping[f"down_blocks.{b}.downsamplers.0.conv"] = f"input_blocks.{block}.0.op"
            kinds[f"down_blocks.{b}.downsamplers.0.conv"] = "plain"
            block += 1
    for name, ldm, kind in (
        ("mid_block.resnets.0", "middle_block.0", "resnet"),
        ("mid_block.attentions.0", "middle_block.1", "plain"),
        ("mid_block.resnets.1", "middle_block.2", "resnet"),
    ):
        mapping[name], kinds[name] = ldm, kind
    block = 0
    for b in range(len(config["up_block_types"])):
        for layer in range(layers + 1):
            has_attention = any(k.startswith(f"up_blocks.{b}.attentions.{layer}.") for k in state)
            mapping[f"up_blocks.{b}.resnets.{layer}"] = f"output_blocks.{block}.0"
            kinds[f"up_blocks.{b}.resnets.{layer}"] = "resnet"
            mapping[f"up_blocks.{b}.attentions.{layer}"] = f"output_blocks.{block}.1"
            kinds[f"up_blocks.{b}.attentions.{layer}"] = "plain"
            if layer == layers:
                # The upsampler follows the last layer: after its attention when there is one.
                mapping[f"up_blocks.{b}.upsamplers.0.conv"] = f"output_blocks.{block}.{2 if has_attention else 1}.conv"
                kinds[f"up_blocks.{b}.upsamplers.0.conv"] = "plain"
            block += 1
    converted: Tensors = {}
    # Longest prefixes first, so "conv_in" never shadows a longer name that starts the same way.
    prefixes = sorted(mapping, key=len, reverse=True)
    for key, tensor in state.items():
        prefix = next((p for p in prefixes if key.startswith(p + ".")), None)
        if prefix is None:
            raise ValueError(f"no original-layout name for UNet weight {key!r}")
        suffix = key[len(prefix) + 1 :]
        if kinds[prefix] == "resnet":
            suffix = _resnet_suffix(suffix)
        converted[f"model.diffusion_model.{mapping[prefix]}.{suffix}"] = tensor
    return converted


_VAE_ATTENTION_NAMES = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def vae_to_ldm(state: Tensors, config: dict[str, Any]) -> Tensors:
    """A diffusers AutoencoderKL state dict in the original `first_stage_model.` layout."""
    count = len(config["up_block_types"])
    converted: Tensors = {}
    for key, tensor in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        for part in ("encoder", "decoder"):
            for index in (0, 1):
                new = new.replace(f"{part}.mid_block.resnets.{index}.", f"{part}.mid.block_{index + 1}.")
        new = new.replace("down_blocks.", "down.").replace(".resnets.", ".block.")
        new = new.replace(".downsamplers.0.", ".downsample.").replace(".upsamplers.0.", ".upsample.")
        new = new.replace("conv_shortcut", "nin_shortcut")
        if new.startswith("decoder.up_blocks."):
            index = int(new.split(".")[2])
            new = ".".join(["decoder", "up", str(count - 1 - index), *new.split(".")[3:]])
        if ".mid_block.attentions.0." in new:
            head, _, tail = new.partition(".mid_block.attentions.0.")
            for diffusers_name, ldm_name in _VAE_ATTENTION_NAMES:
                if tail.startswith(diffusers_name + "."):
                    tail = ldm_name + tail[len(diffusers_name) :]
            new = f"{head}.mid.attn_1.{tail}"
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]  # the original attention uses 1x1 convolutions
        converted[f"first_stage_model.{new}"] = tensor
    return converted


def clip_to_ldm(state: Tensors, prefix: str) -> Tensors:
    """An OpenAI CLIP text encoder (SD 1.x, SDXL's first) under `prefix` + `text_model.`."""
    converted: Tensors = {}
    for key, tensor in state.items():
        if key == "text_projection.weight":
            continue
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        converted[prefix + name] = tensor
    return converted


def open_clip_to_ldm(state: Tensors, prefix: str) -> Tensors:
    """An OpenCLIP text encoder (SD 2.x, SDXL's second) in open_clip's own names under `prefix`."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    converted: Tensors = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in state:
        converted[prefix + "text_projection"] = state.pop("text_projection.weight").T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for n in layers:
        source = f"encoder.layers.{n}."
        target = f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            # open_clip keeps q, k and v in one packed projection.
            converted[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{source}self_attn.{p}_proj.{kind}") for p in "qkv"]
            )
            converted[f"{target}attn.out_proj.{kind}"] = state.pop(f"{source}self_attn.out_proj.{kind}")
            converted[f"{target}ln_1.{kind}"] = state.pop(f"{source}layer_norm1.{kind}")
            converted[f"{target}ln_2.{kind}"] = state.pop(f"{source}layer_norm2.{kind}")
            converted[f"{target}mlp.c_fc.{kind}"] = state.pop(f"{source}mlp.fc1.{kind}")
            converted[f"{target}mlp.c_proj.{kind}"] = state.pop(f"{source}mlp.fc2.{kind}")
    leftover = [k for k in state if "position_ids" not in k]
    if leftover:
        raise ValueError(f"no open_clip name for text encoder weights {leftover[:3]}")
    return converted


def pipeline_to_ldm(pipeline, architecture: str) -> Tensors:
    """Every weight of an SD pipeline in the original single-file layout of `architecture`."""
    state = unet_to_ldm(pipeline.unet.state_dict(), dict(pipeline.unet.config))
    state.update(vae_to_ldm(pipeline.vae.state_dict(), dict(pipeline.vae.config)))
    text = pipeline.text_encoder.state_dict()
    if architecture == "sd1":
        state.update(clip_to_ldm(text, "cond_stage_model.transformer."))
    elif architecture == "sd2":
        state.update(open_clip_to_ldm(text, "cond_stage_model.model."))
    elif architecture == "sdxl":
        state.update(clip_to_ldm(text, "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(pipeline.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    return state


def save_single_file(pipeline, architecture: str, out_file: Path) -> Path:
    """Save `pipeline` as one LDM-layout .safetensors checkpoint."""
    state = {k: v.detach().contiguous() for k, v in pipeline_to_ldm(pipeline, architecture).items()}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_file))
    return out_file
