"""A randomly initialised Stable Diffusion XL of the real architecture, in miniature.

Like the SDXL base model it has two text encoders (OpenAI CLIP, then OpenCLIP with a
projection, whose hidden states are concatenated for cross-attention and whose pooled
output conditions the UNet together with the size and crop "time ids"), a UNet with
`text_time` additional embeddings and linear transformer projections, and an 8x VAE.
The two encoders have different widths, as the real ones do (768 and 1280), so a
conversion that mixed them up would fail loudly instead of passing unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from worker.checkpoint_config import heads_for_width, norm_groups
from worker.model_build.tiny import clip_tokenizer, tiny_text_config, tiny_vae

FIRST_WIDTH = 32
SECOND_WIDTH = 48
POOLED_WIDTH = 32
TIME_EMBED_WIDTH = 8

SDXL_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def tiny_xl_unet(image_size: int) -> UNet2DConditionModel:
    """SDXL's UNet layout in miniature: plain first level, cross-attention below, text_time embeddings."""
    return UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=FIRST_WIDTH + SECOND_WIDTH,
        attention_head_dim=[heads_for_width(c) for c in (32, 64)],
        transformer_layers_per_block=1,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_WIDTH,
        projection_class_embeddings_input_dim=TIME_EMBED_WIDTH * 6 + POOLED_WIDTH,
        norm_num_groups=norm_groups([32, 64]),
    )


def build_tiny_xl_model(out_dir: Path, seed: int = 0, image_size: int = 64) -> Path:
    """Build the random tiny SDXL deterministically from `seed` and save it as a diffusers folder."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(out_dir / "tokenizer")
    tokenizer_2 = clip_tokenizer(out_dir / "tokenizer_2", pad_token="!")  # OpenCLIP pads with "!"
    text_encoder = CLIPTextModel(tiny_text_config(tokenizer, FIRST_WIDTH))
    text_encoder_2 = CLIPTextModelWithProjection(tiny_text_config(tokenizer_2, SECOND_WIDTH, "gelu", POOLED_WIDTH))
    vae = tiny_vae(image_size)
    vae.register_to_config(scaling_factor=0.13025)
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=tiny_xl_unet(image_size),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULE),
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
