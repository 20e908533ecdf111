"""Load a single-file (original LDM layout) `.safetensors` checkpoint of SD 1.x, SD 2.x or SDXL, offline.

A single file holds weights only. The configs and tokenizers diffusers needs to build the
pipeline are generated from the file's own tensor shapes (`worker.checkpoint_config`) into
a temporary folder, or taken from the diffusers folder that the model's defaults file names
as `config` (for checkpoints whose layout is not a Stable Diffusion release's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.catalog import PREDICTION_TYPES, ModelEntry, architecture_of_keys, safetensors_header
from worker.checkpoint_config import CheckpointConfigError, pipeline_configs, write_config_folder
from worker.runner import ModelLoadError


def checkpoint_architecture(entry: ModelEntry) -> tuple[str, dict[str, list[int]]]:
    """sd1, sd2 or sdxl, and the tensor shapes, from the checkpoint's header; ModelLoadError otherwise."""
    try:
        shapes, _metadata = safetensors_header(entry.path)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"model {entry.name!r}: {entry.path} is not a readable safetensors file ({error})"
        ) from None
    architecture = architecture_of_keys(shapes)
    if architecture == "unknown":
        raise ModelLoadError(
            f"model {entry.name!r}: {entry.path} is not a Stable Diffusion 1.x, 2.x or XL checkpoint (it has no CLIP "
            "or OpenCLIP text encoder under cond_stage_model or conditioner); is it a LoRA, a VAE or a diffusers "
            "component?"
        )
    return architecture, shapes


def check_single_file(entry: ModelEntry) -> str:
    """Everything about a checkpoint that can be checked without reading weights; returns its architecture."""
    architecture, shapes = checkpoint_architecture(entry)
    if entry.options.prediction_type not in set(PREDICTION_TYPES.values()):
        raise ModelLoadError(
            f"model {entry.name!r}: prediction_type {entry.options.prediction_type!r} in its defaults file must be "
            "epsilon or v_prediction"
        )
    if entry.options.config is not None:
        if not (entry.options.config / "model_index.json").is_file():
            raise ModelLoadError(
                f"model {entry.name!r}: its config {entry.options.config} is not a diffusers folder "
                "(no model_index.json)"
            )
        return architecture
    try:
        pipeline_configs(shapes, architecture, entry.options.prediction_type)
    except CheckpointConfigError as error:
        sidecar = entry.path.name + ".sdfarm.json"
        raise ModelLoadError(
            f"model {entry.name!r}: sdfarm cannot work out the configs of this {architecture} checkpoint: {error}. "
            f'Name a diffusers folder that fits it in {sidecar}: {{"config": "/path/to/diffusers-folder"}}.'
        ) from None
    return architecture


@contextmanager
def config_folder(entry: ModelEntry) -> Iterator[Path]:
    """A diffusers folder of configs and tokenizers for the checkpoint, for as long as the load needs it."""
    check_single_file(entry)
    if entry.options.config is not None:
        yield entry.options.config
        return
    architecture, shapes = checkpoint_architecture(entry)
    with tempfile.TemporaryDirectory(prefix="sdfarm-configs-") as folder:
        yield write_config_folder(shapes, architecture, entry.options.prediction_type, Path(folder))


def load_single_file(entry: ModelEntry, configs: Path, dtype):
    """Build the text-to-image pipeline (SDXL's own for SDXL) from one checkpoint file and its config folder."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    architecture, _shapes = checkpoint_architecture(entry)
    pipeline_class = StableDiffusionXLPipeline if architecture == "sdxl" else StableDiffusionPipeline
    extra = {} if architecture == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    return pipeline_class.from_single_file(
        str(entry.path), config=str(configs), local_files_only=True, torch_dtype=dtype, **extra
    )
