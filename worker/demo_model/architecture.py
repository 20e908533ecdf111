"""The demo model's component sizes: narrow versions of the SD 1.x VAE, UNet and CLIP text encoder."""

from __future__ import annotations

import inspect

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from worker.model_build.tiny import SD1_SCHEDULE

TEXT_WIDTH = 64


# GroupNorm removes each group's mean; with one or two channels per group (as 8 groups over 8
# channels gives) it erases the flat background colour itself, so the narrow nets use few groups.
VAE_NORM_GROUPS = 2
UNET_NORM_GROUPS = 4


def demo_vae(image_size: int) -> AutoencoderKL:
    """Four-level AutoencoderKL (8x downscale, 4 latent channels), narrowest where the maps are largest."""
    return AutoencoderKL(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=VAE_NORM_GROUPS,
    )


def demo_unet(image_size: int, cross_attention_dim: int = TEXT_WIDTH) -> UNet2DConditionModel:
    """Three-level UNet with cross-attention on the two finer levels (8x8 and 4x4 for 64px images)."""
    return UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=UNET_NORM_GROUPS,
    )


def demo_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A two-layer CLIP text transformer over the demo's own small vocabulary."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=TEXT_WIDTH * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_WIDTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModel(config)


def _schedule_for(cls: type) -> dict:
    """SD1_SCHEDULE restricted to the keys that scheduler class accepts (skip_prk_steps is PNDM-only)."""
    return {key: value for key, value in SD1_SCHEDULE.items() if key in inspect.signature(cls.__init__).parameters}


def training_scheduler() -> DDPMScheduler:
    """The SD 1.x DDPM forward process used to noise latents during training."""
    return DDPMScheduler(**_schedule_for(DDPMScheduler), clip_sample=False)


def sampling_scheduler() -> DDIMScheduler:
    """The deterministic DDIM sampler shipped with the model, on the same SD 1.x schedule."""
    # clip_sample must stay off: latents are unit-variance, not confined to [-1, 1].
    return DDIMScheduler(**_schedule_for(DDIMScheduler), clip_sample=False)
