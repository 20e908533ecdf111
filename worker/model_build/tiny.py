"""`sdfarm model make-tiny`: a randomly initialised Stable Diffusion of the real architecture.

Every component is the class a real SD 1.x checkpoint uses (CLIP's own tokenizer and
vocabulary, a CLIP text encoder, UNet2DConditionModel, AutoencoderKL with the usual 8x
downscale, a PNDM scheduler configured like SD 1.5), only much narrower, so a 64x64 image
takes a few milliseconds per step on one CPU core. The choices a release fixes rather than
its weights (attention heads, GroupNorm groups) follow the rules sdfarm uses to rebuild the
configs of a single-file checkpoint, so a single-file copy loads exactly like the folder.
It is saved in diffusers format with safetensors and loaded like real weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from worker.checkpoint_config import SD1_HEADS, heads_for_width, norm_groups
from worker.clip.vocabulary import END_TOKEN, write_clip_tokenizer

# Stable Diffusion 1.x noise schedule (scaled_linear betas over 1000 training steps).
SD1_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def clip_tokenizer(out_dir: Path, pad_token: str = END_TOKEN) -> CLIPTokenizer:
    """CLIP's real tokenizer, written into out_dir and loaded from there."""
    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(out_dir, pad_token))


def tiny_text_config(
    tokenizer: CLIPTokenizer, width: int = 32, activation: str = "quick_gelu", projection: int | None = None
) -> CLIPTextConfig:
    """A two-layer CLIP text transformer config with the real vocabulary and 77-token context."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=width * 2,
        num_hidden_layers=2,
        num_attention_heads=heads_for_width(width),
        max_position_embeddings=77,
        projection_dim=projection or width,
        hidden_act=activation,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )


def tiny_unet(image_size: int, cross_attention_dim: int = 32, in_channels: int = 4) -> UNet2DConditionModel:
    """A two-level UNet with cross-attention, the SD 1.x block layout in miniature (9 inputs for inpainting)."""
    return UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=SD1_HEADS,
        norm_num_groups=norm_groups([32, 64]),
    )


def tiny_vae(image_size: int) -> AutoencoderKL:
    """An AutoencoderKL with four levels, hence the real 8x spatial downscale and 4 latent channels."""
    return AutoencoderKL(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=norm_groups([8, 16]),
    )


def build_tiny_model(out_dir: Path, seed: int = 0, image_size: int = 64, inpainting: bool = False) -> Path:
    """Build the random tiny model deterministically from `seed` and save it to out_dir.

    With `inpainting`, the UNet also takes the mask and the masked image (9 input channels), as
    SD 1.5's inpainting model does.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(out_dir / "tokenizer")
    text_encoder = CLIPTextModel(tiny_text_config(tokenizer))
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(image_size),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(image_size, text_encoder.config.hidden_size, in_channels=9 if inpainting else 4),
        scheduler=PNDMScheduler(**SD1_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
