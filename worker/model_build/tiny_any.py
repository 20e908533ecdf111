"""One entry point for sdfarm's tiny models of each architecture, as a folder and as a single file."""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("sd1", "sd2", "sdxl")


def build_tiny(architecture: str, out_dir: Path, seed: int = 0, inpainting: bool = False) -> Path:
    """Build the random tiny model of `architecture` as a diffusers folder (SD 1.x may be an inpainting one)."""
    if inpainting and architecture != "sd1":
        raise ValueError("sdfarm builds tiny inpainting models of SD 1.x only")
    if architecture == "sd1":
        from worker.model_build.tiny import build_tiny_model

        return build_tiny_model(out_dir, seed=seed, inpainting=inpainting)
    if architecture == "sd2":
        from worker.model_build.tiny_sd2 import build_tiny_sd2_model

        return build_tiny_sd2_model(out_dir, seed=seed)
    if architecture == "sdxl":
        from worker.model_build.tiny_xl import build_tiny_xl_model

        return build_tiny_xl_model(out_dir, seed=seed)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")


def save_as_single_file(folder: Path, architecture: str, out_file: Path) -> Path:
    """Write the diffusers model in `folder` as one original-layout checkpoint, as people share them."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from worker.model_build.checkpoint import save_single_file

    pipeline_class = StableDiffusionXLPipeline if architecture == "sdxl" else StableDiffusionPipeline
    pipeline = pipeline_class.from_pretrained(folder, local_files_only=True)
    return save_single_file(pipeline, architecture, out_file)
