"""A randomly initialised Stable Diffusion 2.x of the real architecture, in miniature.

What sets SD 2.x apart from 1.x is kept: an OpenCLIP text encoder (GELU activations,
stored in open_clip's own key names in single-file checkpoints), linear projections in
the UNet's transformers, and v-prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from worker.model_build.tiny import COMMON_WORDS, SD1_SCHEDULE, tiny_vae
from worker.model_build.tokenizer import build_clip_tokenizer

WIDTH = 32


def build_tiny_sd2_model(out_dir: Path, seed: int = 0, image_size: int = 64) -> Path:
    """Build the random tiny SD 2.x deterministically from `seed` and save it as a diffusers folder."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(COMMON_WORDS, out_dir / "tokenizer")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=WIDTH,
            intermediate_size=WIDTH * 2,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=WIDTH,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=16,
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
