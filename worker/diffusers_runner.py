"""The real runner: a diffusers pipeline loaded once, reused for every batch."""

from __future__ import annotations

import logging
import time

import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image as PILImage

from models.catalog import ModelEntry, short_hash
from models.samplers import find_sampler
from worker.loader import load_pipeline
from worker.runner import GpuOutOfMemoryError, PipelineRunner, ProgressCallback, RenderOutput, RenderRequest

log = logging.getLogger(__name__)


class DiffusersRunner(PipelineRunner):
    """Holds the pipeline's components; text-to-image and image-to-image share them."""

    def __init__(self, entry: ModelEntry, device: str):
        started = time.perf_counter()
        self.model_name = entry.name
        self.device = device
        self.pipeline = load_pipeline(entry, device)
        self.model_hash = short_hash(entry.path)
        # The scheduler as shipped with the model; each sampler is derived from it.
        self._base_scheduler_config = dict(self.pipeline.scheduler.config)
        self._img2img: StableDiffusionImg2ImgPipeline | None = None
        self.load_seconds = time.perf_counter() - started

    def _scheduler_for(self, sampler_name: str):
        import diffusers

        sampler = find_sampler(sampler_name)
        if sampler is None:
            raise ValueError(f"unknown sampler {sampler_name!r}")
        scheduler_class = getattr(diffusers, sampler.scheduler_class)
        return scheduler_class.from_config(self._base_scheduler_config, **sampler.overrides)

    def _img2img_pipeline(self) -> StableDiffusionImg2ImgPipeline:
        if self._img2img is None:
            # Built from the loaded components: no second copy of the weights.
            self._img2img = StableDiffusionImg2ImgPipeline(**self.pipeline.components)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Run one pipeline call for the whole batch, each image with its own seeded generator."""
        pipeline = self._img2img_pipeline() if request.init_image is not None else self.pipeline
        pipeline.scheduler = self._scheduler_for(request.sampler)
        # CPU generators give the same starting noise on every device, so a seed means one image.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds]

        def step_end(pipe, step: int, _timestep, callback_kwargs):
            on_progress((step + 1) / max(1, pipe.num_timesteps))
            return callback_kwargs

        arguments = dict(
            prompt=request.prompts,
            negative_prompt=request.negative_prompts if any(request.negative_prompts) else None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            generator=generators,
            # Decode ourselves: a NaN image can then be decoded again in fp32 without re-denoising.
            output_type="latent",
            callback_on_step_end=step_end,
            clip_skip=request.clip_skip - 1 if request.clip_skip > 1 else None,
        )
        if request.init_image is not None:
            strength = request.strength if request.strength is not None else 0.75
            arguments.update(image=request.init_image, strength=strength)
        else:
            arguments.update(width=request.width, height=request.height)
        try:
            with torch.inference_mode():
                latents = pipeline(**arguments).images
                pixels = self._decode(latents, self.pipeline.vae.dtype)
                nan = _nan_rows(pixels)
                if any(nan) and self.pipeline.vae.dtype != torch.float32:
                    log.warning("NaN in %d decoded images; decoding them again with the VAE in fp32", sum(nan))
                    mask = torch.tensor(nan)
                    pixels[mask] = self._decode(latents[mask], torch.float32)
                    nan = _nan_rows(pixels)
        except torch.OutOfMemoryError as error:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            raise GpuOutOfMemoryError(str(error)) from error
        return _to_output(pixels, nan)

    def _decode(self, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """VAE-decode latents to float pixels in 0..1, shaped (batch, height, width, channel)."""
        vae = self.pipeline.vae
        original = vae.dtype
        if dtype != original:
            vae.to(dtype)
        try:
            decoded = vae.decode(latents.to(dtype) / vae.config.scaling_factor, return_dict=False)[0]
        finally:
            if dtype != original:
                vae.to(original)
        return (decoded.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


def _nan_rows(pixels: torch.Tensor) -> list[bool]:
    return [not bool(torch.isfinite(image).all()) for image in pixels]


def _to_output(pixels: torch.Tensor, nan: list[bool]) -> RenderOutput:
    array = torch.nan_to_num(pixels, nan=0.0).mul(255).round().to(torch.uint8).cpu().numpy()
    return RenderOutput(images=[PILImage.fromarray(image) for image in array], nan=nan)
