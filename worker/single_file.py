"""Load a single-file (original LDM layout) `.safetensors` checkpoint of SD 1.x, SD 2.x or SDXL, offline.

A single file holds weights only. The configs and tokenizers diffusers needs to build the
pipeline come from a local diffusers folder, never a hub: the one named by `config` in the
model's defaults file, else a diffusers folder of the same architecture in the same models
directory (a downloaded `stable-diffusion-v1-5` serves every SD 1.x checkpoint beside it).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.catalog import ModelEntry, architecture_of_keys, detect_architecture, safetensors_keys
from worker.runner import ModelLoadError


def checkpoint_architecture(file: Path) -> str:
    """sd1, sd2 or sdxl from the checkpoint's tensor names; ModelLoadError when it is none of them."""
    architecture = architecture_of_keys(safetensors_keys(file))
    if architecture == "unknown":
        raise ModelLoadError(
            f"{file} is not a Stable Diffusion 1.x, 2.x or XL checkpoint (it has no CLIP or OpenCLIP text "
            "encoder under cond_stage_model or conditioner); is it a LoRA, a VAE or a diffusers component?"
        )
    return architecture


def config_folder(entry: ModelEntry, architecture: str) -> Path:
    """The local diffusers folder whose configs and tokenizers fit this checkpoint."""
    configured = entry.options.config
    if configured is not None:
        if not (configured / "model_index.json").is_file():
            raise ModelLoadError(
                f"model {entry.name!r}: its config {configured} is not a diffusers folder (no model_index.json)"
            )
        return configured
    for candidate in sorted(entry.path.parent.iterdir()):
        if (candidate / "model_index.json").is_file() and detect_architecture(candidate, "diffusers") == architecture:
            return candidate
    sidecar = entry.path.name + ".sdfarm.json"
    raise ModelLoadError(
        f"model {entry.name!r} is a single-file {architecture} checkpoint and sdfarm has no {architecture} configs "
        f"to build it with (it never downloads them). Put a diffusers {architecture} model folder beside it in "
        f'{entry.path.parent}, or name one in {sidecar}: {{"config": "/path/to/diffusers-folder"}}.'
    )


def load_single_file(entry: ModelEntry, dtype):
    """Build the text-to-image pipeline (SDXL's own for SDXL) from one checkpoint file, offline."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    architecture = checkpoint_architecture(entry.path)
    config = config_folder(entry, architecture)
    pipeline_class = StableDiffusionXLPipeline if architecture == "sdxl" else StableDiffusionPipeline
    extra = {} if architecture == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    index = json.loads((config / "model_index.json").read_text())
    if architecture != "sdxl" and "XL" in index.get("_class_name", ""):
        raise ModelLoadError(f"model {entry.name!r}: config {config} is an SDXL folder but the file is {architecture}")
    return pipeline_class.from_single_file(
        str(entry.path), config=str(config), local_files_only=True, torch_dtype=dtype, **extra
    )
