"""Load a Stable Diffusion pipeline from disk only: a diffusers folder or a single checkpoint."""

from __future__ import annotations

import json
import logging
import os

from models.catalog import ModelEntry
from worker.runner import ModelLoadError

log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"SDFARM_DEVICE={requested} but no CUDA device is visible; use auto or cpu")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def ensure_builtin(entry: ModelEntry) -> None:
    """Build the random tiny model on first use; other models must already be on disk."""
    if entry.name == "tiny" and entry.builtin and not (entry.path / "model_index.json").is_file():
        from worker.model_build.tiny import build_tiny_model

        staging = entry.path.with_name(f".{entry.path.name}.{os.getpid()}.building")
        build_tiny_model(staging)
        try:
            staging.rename(entry.path)
        except OSError:
            # Another process finished first; its copy is identical (same seed).
            import shutil

            shutil.rmtree(staging, ignore_errors=True)


def load_pipeline(entry: ModelEntry, device: str, compile_unet: bool = False):
    """Load the text-to-image pipeline for `entry` onto `device` without touching any hub.

    On CUDA: fp16 weights, PyTorch's scaled-dot-product attention
    (diffusers' default processor) and, with `compile_unet`, a torch.compile'd UNet whose
    kernels Inductor caches on disk (TORCHINDUCTOR_CACHE_DIR), so restarts are fast.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import torch
    import transformers

    # Loading progress bars would land in the worker log as WARNING lines; the log says when it is done.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    ensure_builtin(entry)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if not entry.path.exists():
        raise ModelLoadError(
            f"model {entry.name!r}: {entry.path} does not exist. Point SDFARM_MODEL at a diffusers folder "
            "or a .safetensors checkpoint, or put one in the models directory (SDFARM_MODELS_DIR)."
        )
    try:
        if entry.kind == "diffusers":
            pipeline = _load_diffusers_folder(entry, dtype)
            if entry.options.vae is not None:
                pipeline.vae = load_vae(entry, entry.path, dtype)
        else:
            from worker.single_file import config_folder, load_single_file

            with config_folder(entry) as configs:
                pipeline = load_single_file(entry, configs, dtype)
                if entry.options.vae is not None:
                    pipeline.vae = load_vae(entry, configs, dtype)
    except ModelLoadError:
        raise
    except Exception as error:  # diffusers raises many types; the user needs one clear message
        raise ModelLoadError(f"model {entry.name!r} at {entry.path} could not be loaded: {error}") from error
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(device)
    # The memory format (channels-last or not) is left to the worker's warm-up tuning
    # (DiffusersRunner.configure): measured on an H200, channels-last made the UNet slower.
    if compile_unet:
        # Compiled lazily on the first call: the worker's warm-up image pays for it, not a job.
        pipeline.unet = torch.compile(pipeline.unet, mode="max-autotune-no-cudagraphs", dynamic=False)
    log.info("loaded model %s (%s) on %s in %s", entry.name, entry.kind, device, dtype)
    return pipeline


def _load_diffusers_folder(entry: ModelEntry, dtype):
    """A diffusers folder through its own pipeline class (SDXL's for SDXL)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    index = entry.path / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"model {entry.name!r}: {entry.path} has no model_index.json; is it a diffusers folder?")
    class_name = json.loads(index.read_text()).get("_class_name", "")
    pipeline_class = StableDiffusionXLPipeline if "XL" in class_name else StableDiffusionPipeline
    extra = {} if pipeline_class is StableDiffusionXLPipeline else _safety_checker_arguments(entry)
    return pipeline_class.from_pretrained(entry.path, dtype=dtype, local_files_only=True, **extra)


def _safety_checker_arguments(entry: ModelEntry) -> dict:
    """Keep the model's safety checker only when its defaults file asks for it and the weights include one."""
    if entry.options.safety_checker and (entry.path / "safety_checker").is_dir():
        return {}
    return {"safety_checker": None, "requires_safety_checker": False}


def load_vae(entry: ModelEntry, config_folder, dtype):
    """The VAE named by the model's `vae` option: a diffusers AutoencoderKL folder or a single file."""
    from diffusers import AutoencoderKL

    vae_path = entry.options.vae
    if not vae_path.exists():
        raise ModelLoadError(f"model {entry.name!r}: its VAE override {vae_path} does not exist")
    if vae_path.is_dir():
        return AutoencoderKL.from_pretrained(vae_path, torch_dtype=dtype, local_files_only=True)
    # A single-file VAE (original layout) takes its architecture from the model's own VAE config.
    return AutoencoderKL.from_single_file(
        str(vae_path), config=str(config_folder), subfolder="vae", torch_dtype=dtype, local_files_only=True
    )
