"""A randomly initialised Stable Diffusion 2.x of the real architecture, in miniature.

What sets SD 2.x apart from 1.x is kept: an OpenCLIP text encoder (GELU activations,
stored in open_clip's own key names in single-file checkpoints), linear projections in
the UNet's transformers, and v-prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

from worker.checkpoint_config import heads_for_width, norm_groups
from worker.model_build.tiny import SD1_SCHEDULE, clip_tokenizer, tiny_text_config, tiny_vae

WIDTH = 32
CHANNELS = (32, 64)


def build_tiny_sd2_model(out_dir: Path, seed: int = 0, image_size: int = 64) -> Path:
    """Build the random tiny SD 2.x deterministically from `seed` and save it as a diffusers folder."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(out_dir / "tokenizer", pad_token="!")  # OpenCLIP pads with "!"
    text_encoder = CLIPTextModel(tiny_text_config(tokenizer, WIDTH, activation="gelu"))
    unet = UNet2DConditionModel(
        sample_size=image_size // 8,
        block_out_channels=CHANNELS,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH,
        attention_head_dim=[heads_for_width(c) for c in CHANNELS],
        use_linear_projection=True,
        upcast_attention=True,
        norm_num_groups=norm_groups(list(CHANNELS)),
    )
    schedule = {k: v for k, v in SD1_SCHEDULE.items() if k != "skip_prk_steps"}
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(image_size),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**schedule, prediction_type="v_prediction", clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
