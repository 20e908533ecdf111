"""Full-size Stable Diffusion components of the published releases, randomly initialised.

The configs below are the parts of diffusers' published SD 1.5, SD 2.1 and SDXL base configs
that differ from the class defaults. Built on PyTorch's meta device they give the exact
tensor shapes of a real checkpoint without allocating memory (the config tests use that);
built for real they make a full-size single-file checkpoint for the loading benchmark.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "hidden_act": "quick_gelu"}
# SD 2.x files hold all 24 OpenCLIP-H layers though SD 2 conditions on the 23rd.
OPEN_CLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "hidden_act": "gelu"}
OPEN_CLIP_BIG_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "hidden_act": "gelu"}
_SD_BLOCKS = {
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
UNETS = {
    "sd1": {**_SD_BLOCKS, "cross_attention_dim": 768, "attention_head_dim": 8},
    "sd2": {
        **_SD_BLOCKS,
        "cross_attention_dim": 1024,
        "attention_head_dim": [5, 10, 20, 20],
        "use_linear_projection": True,
    },
    "sdxl": {
        "block_out_channels": [320, 640, 1280],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 2, 10],
        "cross_attention_dim": 2048,
        "attention_head_dim": [5, 10, 20],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
}
TEXT_ENCODERS = {"sd1": [CLIP_L], "sd2": [OPEN_CLIP_H], "sdxl": [CLIP_L, OPEN_CLIP_BIG_G]}


def release_components(architecture: str) -> SimpleNamespace:
    """UNet, VAE and text encoder(s) of a release, on the current default device (use "meta" for shapes only)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    encoders = []
    for position, text in enumerate(TEXT_ENCODERS[architecture]):
        width = text["hidden_size"]
        config = CLIPTextConfig(**text, num_attention_heads=width // 64, projection_dim=width)
        encoders.append((CLIPTextModelWithProjection if position == 1 else CLIPTextModel)(config))
    return SimpleNamespace(
        unet=UNet2DConditionModel(**UNETS[architecture]),
        vae=AutoencoderKL(**VAE),
        text_encoder=encoders[0],
        text_encoder_2=encoders[1] if len(encoders) > 1 else None,
    )


def release_single_file(architecture: str, out_file: Path, dtype: torch.dtype = torch.float16) -> Path:
    """A full-size checkpoint of random weights in the original single-file layout, as people download."""
    from worker.model_build.checkpoint import save_single_file

    torch.manual_seed(0)
    components = release_components(architecture)
    for module in (components.unet, components.vae, components.text_encoder, components.text_encoder_2):
        if module is not None:
            module.to(dtype)
    return save_single_file(components, architecture, out_file)


def release_folder(architecture: str, out_dir: Path, dtype: torch.dtype = torch.float16, device: str = "cpu") -> Path:
    """A diffusers folder of a release's full-size components with random weights (SD 1.x and 2.x).

    Built on `device` (a GPU makes the billion random numbers in a second) and saved in `dtype`,
    with CLIP's real tokenizer and the release's PNDM schedule: the farm loads it like the real model.
    """
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from worker.model_build.tiny import SD1_SCHEDULE, clip_tokenizer

    if architecture not in {"sd1", "sd2"}:
        raise ValueError(f"release_folder builds sd1 or sd2, not {architecture!r}")
    torch.manual_seed(0)
    with torch.device(device):
        components = release_components(architecture)
    pipeline = StableDiffusionPipeline(
        vae=components.vae.to(dtype),
        text_encoder=components.text_encoder.to(dtype),
        tokenizer=clip_tokenizer(Path(out_dir) / "tokenizer"),
        unet=components.unet.to(dtype),
        scheduler=PNDMScheduler(**SD1_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)
