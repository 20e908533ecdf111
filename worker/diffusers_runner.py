"""The real runner: a diffusers pipeline loaded once, reused for every batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image as PILImage

from models.catalog import INPAINTING_CHANNELS, ModelEntry, short_hash
from models.samplers import find_sampler
from worker.loader import load_pipeline
from worker.lora import LoraSwitcher
from worker.prompt_encoding import encode_prompts, needs_own_encoding
from worker.runner import GpuOutOfMemoryError, PipelineRunner, ProgressCallback, RenderOutput, RenderRequest
from worker.tuning import COMPILED, CONFIGURATIONS

log = logging.getLogger(__name__)

# Pictures in, one "flagged as NSFW" per picture out.
SafetyCheck = Callable[[list[PILImage.Image]], list[bool]]


class DiffusersRunner(PipelineRunner):
    """Holds the pipeline's components; text-to-image, image-to-image and inpainting share them."""

    def __init__(self, entry: ModelEntry, device: str, lora_dir: Path | None = None, compile_unet: bool = False):
        self.model_name = entry.name
        self.device = device
        self.pipeline = load_pipeline(entry, device, compile_unet)
        self.model_hash = short_hash(entry.path)
        self.is_xl = getattr(self.pipeline, "text_encoder_2", None) is not None
        # An inpainting UNet (9 input channels) can only inpaint; the API sends it nothing else.
        self.inpainting = self.pipeline.unet.config.in_channels == INPAINTING_CHANNELS
        # The scheduler as shipped with the model; each sampler is derived from it.
        self._base_scheduler_config = dict(self.pipeline.scheduler.config)
        self._derived: dict[str, object] = {}
        self._lora_dir = lora_dir
        self._loras: LoraSwitcher | None = None
        # Set only when the model ships a safety checker and its defaults file turns it on; tests inject one.
        self.safety_check: SafetyCheck | None = _diffusers_safety_check(self.pipeline, device)
        self.configuration = "compile" if compile_unet else "eager"
        self._eager_unet = self.pipeline.unet
        self._compiled: dict[str, torch.nn.Module] = {}
        # With fused projections: the UNet's attention processors of each kind, and which is in use.
        self._attention: dict | None = None

    def configure(self, name: str) -> None:
        """Run from now on in configuration `name` (one of CONFIGURATIONS), whichever one ran before.

        Compiled UNets are kept, so going back to one costs no second compilation; they are
        compiled lazily, on their first call, which the tuning's untimed call pays for.
        """
        if name not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration {name!r}; expected one of {', '.join(CONFIGURATIONS)}")
        torch.compiler.set_stance("default")  # a candidate compiles at its first call (see compiled_shapes_only)
        self._fuse_projections(name.endswith("fused_qkv"))
        memory_format = torch.channels_last if name.endswith("channels_last") else torch.contiguous_format
        self._eager_unet.to(memory_format=memory_format)
        self.pipeline.vae.to(memory_format=memory_format)
        unet = self._eager_unet
        if name.startswith("compile") or name == "cuda_graphs":
            if name not in self._compiled:
                import torch._inductor.config as inductor

                # 1x1 convolutions as matrix products: the UNet's projections then use cuBLAS's GEMMs.
                inductor.conv_1x1_as_mm = True
                mode = "reduce-overhead" if name == "cuda_graphs" else None
                self._compiled[name] = torch.compile(self._eager_unet, mode=mode, dynamic=False)
            unet = self._compiled[name]
        self.pipeline.unet = unet
        # Image-to-image and inpainting pipelines are built from the components: build them again.
        self._derived.clear()
        self.configuration = name

    def _fuse_projections(self, fused: bool) -> None:
        """Fuse each attention's query, key and value projections into one matrix product, or undo it.

        The fused weights are copies of the base weights, made once; the unfused layers stay, and a
        batch with a LoRA runs on them (_use_attention_for), since a LoRA adapts those layers.
        """
        if fused == (self._attention is not None):
            return
        models = [self._eager_unet, self.pipeline.vae]
        if fused:
            originals = [model.attn_processors for model in models]
            try:
                for model in models:
                    model.fuse_qkv_projections()
            except Exception:  # an architecture diffusers cannot fuse: the candidate loses, the model stays whole
                for model, original in zip(models, originals, strict=True):
                    model.set_attn_processor(dict(original))
                raise
            self._attention = {"fused": self._eager_unet.attn_processors, "unfused": originals[0], "in_use": "fused"}
        else:
            for model in models:
                model.unfuse_qkv_projections()
            self._attention = None

    def _use_attention_for(self, request: RenderRequest) -> None:
        """With fused projections, run a LoRA's batch on the unfused layers (which the LoRA adapts), the
        others on the fused ones: switching sets the processors kept from fusing, it does not fuse again."""
        if self._attention is None:
            return
        wanted = "unfused" if request.loras else "fused"
        if self._attention["in_use"] != wanted:  # not walked every batch: a GPU waits for this call
            self._eager_unet.set_attn_processor(dict(self._attention[wanted]))
            self._attention["in_use"] = wanted

    def compiled_shapes_only(self) -> None:
        """From now on, a call no compiled graph covers runs eager instead of compiling one.

        Compiled graphs are specialised to what they were warmed up with: the (batch, size) and the
        kind of timestep (worker.tuning.warm_up_samplers). Without this, a job's smaller last batch,
        another size, an SDE sampler or a LoRA would compile a new graph in the middle of a job: tens
        of seconds on a GPU, a minute on the CPU, for one batch. The stance is the process's; only the
        UNet is compiled in a worker.
        """
        if self.configuration in COMPILED:
            torch.compiler.set_stance("eager_on_recompile")

    def _scheduler_for(self, sampler_name: str):
        import diffusers

        sampler = find_sampler(sampler_name)
        if sampler is None:
            raise ValueError(f"unknown sampler {sampler_name!r}")
        scheduler_class = getattr(diffusers, sampler.scheduler_class)
        return scheduler_class.from_config(self._base_scheduler_config, **sampler.overrides)

    def _pipeline_for(self, request: RenderRequest):
        """The text-to-image pipeline, or the image-to-image or inpainting one built from its components."""
        kind = "inpaint" if request.mask_image is not None else "img2img" if request.init_image is not None else None
        if self.inpainting and kind != "inpaint":
            raise ValueError(f"{self.model_name} is an inpainting model: it needs an init image and a mask")
        if kind is None:
            return self.pipeline
        if kind not in self._derived:
            import diffusers

            names = {
                "img2img": ("StableDiffusionImg2ImgPipeline", "StableDiffusionXLImg2ImgPipeline"),
                "inpaint": ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline"),
            }[kind]
            pipeline_class = getattr(diffusers, names[1] if self.is_xl else names[0])
            # Built from the loaded components: no second copy of the weights.
            derived = pipeline_class.from_pipe(self.pipeline)
            derived.set_progress_bar_config(disable=True)
            self._derived[kind] = derived
        return self._derived[kind]

    def _lora_switcher(self) -> LoraSwitcher:
        if self._loras is None:
            if self._lora_dir is None:
                raise ValueError("this runner was created without a LoRA directory; set SDFARM_LORA_DIR")
            self._loras = LoraSwitcher(self.pipeline, self._lora_dir)
        return self._loras

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Run one pipeline call for the whole batch, each image with its own seeded generator."""
        if request.loras or self._loras is not None:
            self._lora_switcher().activate(request.loras)
        self._use_attention_for(request)
        if request.init_image is not None and request.strength == 0:
            # No denoising at all: the init image is the answer (a VAE round trip would only blur it).
            init = _fit(request.init_image, request.width, request.height)
            on_progress(1.0)
            return self._finish([init.copy() for _ in request.seeds], [False] * len(request))
        pipeline = self._pipeline_for(request)
        pipeline.scheduler = self._scheduler_for(request.sampler)
        # CPU generators give the same starting noise on every device, so a seed means one image.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds]

        def step_end(pipe, step: int, _timestep, callback_kwargs):
            on_progress((step + 1) / max(1, pipe.num_timesteps))
            return callback_kwargs

        clip_skip = request.clip_skip - 1 if request.clip_skip > 1 else None
        arguments = dict(
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            generator=generators,
            # Decode ourselves: a NaN image can then be decoded again in fp32 without re-denoising.
            output_type="latent",
            callback_on_step_end=step_end,
        )
        if request.init_image is not None:
            strength = request.strength if request.strength is not None else 0.75
            # diffusers runs int(steps * strength) steps; a small strength still gets one step.
            steps = max(request.steps, math.ceil(1 / strength)) if request.steps * strength < 1 else request.steps
            arguments.update(
                image=_fit(request.init_image, request.width, request.height),
                strength=strength,
                num_inference_steps=steps,
            )
            if request.mask_image is not None:
                mask = _fit(request.mask_image, request.width, request.height)
                arguments.update(mask_image=mask, width=request.width, height=request.height)
        else:
            arguments.update(width=request.width, height=request.height)
        try:
            with torch.inference_mode():
                if needs_own_encoding(pipeline, request.prompts + request.negative_prompts, clip_skip, self.is_xl):
                    arguments.update(encode_prompts(pipeline, request.prompts, request.negative_prompts, clip_skip))
                else:
                    arguments.update(
                        prompt=request.prompts,
                        negative_prompt=request.negative_prompts if any(request.negative_prompts) else None,
                        clip_skip=clip_skip,
                    )
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
        if request.mask_image is not None:
            pixels = _keep_unmasked(pixels, request)
        return self._finish(_to_pictures(pixels), nan)

    def _finish(self, pictures: list[PILImage.Image], nan: list[bool]) -> RenderOutput:
        """Attach the safety checker's flags; flagged pictures are kept as they are, never blacked out."""
        flags = self.safety_check(pictures) if self.safety_check is not None else [False] * len(pictures)
        return RenderOutput(images=pictures, nan=nan, nsfw=[bool(flag) for flag in flags])

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


def _fit(picture: PILImage.Image, width: int, height: int) -> PILImage.Image:
    """The init image at the size the job renders at."""
    if picture.size == (width, height):
        return picture
    return picture.resize((width, height), PILImage.Resampling.LANCZOS)


def _keep_unmasked(pixels: torch.Tensor, request: RenderRequest) -> torch.Tensor:
    """Inpainting: pixels outside the mask are the init image's own, not its VAE round trip.

    Grey mask values blend the two, so a soft-edged mask gives a soft seam.
    """
    import numpy as np

    def as_tensor(picture: PILImage.Image) -> torch.Tensor:
        array = np.asarray(_fit(picture, request.width, request.height), dtype=np.float32) / 255
        return torch.from_numpy(array).to(pixels.device)

    init = as_tensor(request.init_image)
    mask = as_tensor(request.mask_image).unsqueeze(-1)
    return init + mask * (pixels - init)


def _diffusers_safety_check(pipeline, device: str) -> SafetyCheck | None:
    """The model's own safety checker as a SafetyCheck, or None when the model has none loaded."""
    checker = getattr(pipeline, "safety_checker", None)
    extractor = getattr(pipeline, "feature_extractor", None)
    if checker is None or extractor is None:
        return None
    import numpy as np

    def check(pictures: list[PILImage.Image]) -> list[bool]:
        inputs = extractor(pictures, return_tensors="pt").pixel_values.to(device, checker.dtype)
        # The checker blacks out what it flags; give it throwaway arrays and keep only its verdicts.
        placeholders = np.zeros((len(pictures), 8, 8, 3), dtype=np.float32)
        with torch.inference_mode():
            _, flags = checker(images=placeholders, clip_input=inputs)
        return [bool(flag) for flag in flags]

    return check


def _nan_rows(pixels: torch.Tensor) -> list[bool]:
    # One reduction and one device-to-host copy for the batch, not a GPU sync per image.
    return (~torch.isfinite(pixels).flatten(1).all(dim=1)).tolist()


def _to_pictures(pixels: torch.Tensor) -> list[PILImage.Image]:
    array = torch.nan_to_num(pixels, nan=0.0).mul(255).round().to(torch.uint8).cpu().numpy()
    return [PILImage.fromarray(image) for image in array]
