"""Train the demo model from scratch on synthetic shapes and save it as a diffusers Stable Diffusion folder.

Run as `python -m worker.demo_model.train --out DIR`. Training has two stages, as
Stable Diffusion itself was built: first an AutoencoderKL learns to compress 64x64
images into 8x8x4 latents, then a UNet and a CLIP text encoder learn, together, to
denoise those latents given the caption.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from worker.demo_model.architecture import (
    demo_text_encoder,
    demo_unet,
    demo_vae,
    sampling_scheduler,
    training_scheduler,
)
from worker.demo_model.shapes import CAPTION_WORDS, make_batch
from worker.model_build.tokenizer import build_clip_tokenizer

Log = Callable[[str], None]

# Reconstruction dominates; a tiny KL term only keeps the latents from drifting to huge values.
KL_WEIGHT = 1e-6
# Fraction of captions replaced by the empty prompt, so classifier-free guidance works at sampling.
CAPTION_DROPOUT = 0.1
# Per-channel constant added to the noise ("offset noise"): the SD 1.x schedule never fully
# destroys an image's mean colour, so without it the model learns to read the background
# colour from the starting noise instead of from the prompt.
OFFSET_NOISE = 0.1
EMA_DECAY = 0.999
LOG_EVERY = 100


def pick_device() -> torch.device:
    """CUDA when available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _lr_lambda(total_steps: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 5% of the peak, which settles the small models' weights."""
    warmup = max(1, min(warmup, total_steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Ema:
    """Exponential moving average of parameters; averaged weights sample far more cleanly than the last step's."""

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float = EMA_DECAY) -> None:
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Blend the current weights in; the ramp-up lets short runs still end near their last weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the live parameters with the averaged ones."""
        for param, shadow in zip(self.params, self.shadow, strict=True):
            param.copy_(shadow)


def train_vae(
    vae: AutoencoderKL,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    image_size: int,
    device: torch.device,
    log: Log,
    lr: float = 2e-3,
) -> None:
    """Fit the autoencoder to reconstruct shape images (L1 + MSE) with a small KL penalty."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps, warmup=100))
    vae.train()
    start = time.monotonic()
    for step in range(steps):
        images, _ = make_batch(batch_size, generator, image_size)
        images = images.to(device)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        # L1 keeps flat colours exact, MSE punishes the occasional badly wrong pixel.
        rec_loss = F.l1_loss(recon, images) + F.mse_loss(recon, images)
        loss = rec_loss + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % LOG_EVERY == 0 or step + 1 == steps:
            log(f"vae step {step + 1}/{steps} rec {rec_loss.item():.4f} ({time.monotonic() - start:.0f}s)")
    vae.eval()


@torch.no_grad()
def measure_scaling_factor(
    vae: AutoencoderKL, generator: torch.Generator, image_size: int, device: torch.device, samples: int = 512
) -> float:
    """1 / std of sampled latents over fresh images, so the diffusion sees unit-variance latents."""
    latents = []
    for _ in range(0, samples, 64):
        images, _ = make_batch(64, generator, image_size)
        latents.append(vae.encode(images.to(device)).latent_dist.sample())
    return float(1.0 / torch.cat(latents).std())


def encode_captions(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, captions: list[str]) -> torch.Tensor:
    """Token embeddings exactly as StableDiffusionPipeline computes them (77 padded tokens, last hidden state)."""
    ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    vae: AutoencoderKL,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    image_size: int,
    device: torch.device,
    log: Log,
    lr: float = 1e-3,
) -> None:
    """Train UNet and text encoder jointly on noise-prediction MSE over the SD 1.x DDPM schedule."""
    noise_scheduler = training_scheduler()
    scaling = vae.config.scaling_factor
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps, warmup=200))
    ema = Ema(params)
    unet.train()
    text_encoder.train()
    start = time.monotonic()
    running = 0.0
    for step in range(steps):
        images, captions = make_batch(batch_size, generator, image_size)
        drop = torch.rand(batch_size, generator=generator) < CAPTION_DROPOUT
        captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
        with torch.no_grad():
            latents = vae.encode(images.to(device)).latent_dist.sample() * scaling
        noise = torch.randn(latents.shape, generator=generator).to(device)
        noise += OFFSET_NOISE * torch.randn((batch_size, latents.shape[1], 1, 1), generator=generator).to(device)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        timesteps = timesteps.to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = unet(noisy, timesteps, encode_captions(tokenizer, text_encoder, captions)).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        ema.update()
        running += loss.item()
        if (step + 1) % LOG_EVERY == 0 or step + 1 == steps:
            count = (step % LOG_EVERY) + 1
            log(f"unet step {step + 1}/{steps} loss {running / count:.4f} ({time.monotonic() - start:.0f}s)")
            running = 0.0
    ema.copy_to_model()
    unet.eval()
    text_encoder.eval()


def train_demo_model(
    out_dir: Path,
    *,
    vae_steps: int,
    unet_steps: int,
    batch_size: int = 32,
    seed: int = 0,
    image_size: int = 64,
    log: Log = print,
) -> Path:
    """Train the shapes demo model from `seed` and save a complete diffusers folder to out_dir."""
    out_dir = Path(out_dir)
    device = pick_device()
    torch.manual_seed(seed)
    # One generator feeds all data and noise, so a run is reproducible from the seed alone.
    generator = torch.Generator().manual_seed(seed)
    tokenizer = build_clip_tokenizer(list(CAPTION_WORDS), out_dir / "tokenizer")
    vae = demo_vae(image_size).to(device)
    text_encoder = demo_text_encoder(tokenizer).to(device)
    unet = demo_unet(image_size, text_encoder.config.hidden_size).to(device)
    for name, model in (("vae", vae), ("text_encoder", text_encoder), ("unet", unet)):
        log(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    log(f"training on {device}")

    train_vae(vae, vae_steps, batch_size, generator, image_size, device, log)
    scaling = measure_scaling_factor(vae, generator, image_size, device)
    vae.register_to_config(scaling_factor=scaling)
    log(f"latent scaling_factor {scaling:.4f}")
    vae.requires_grad_(False)

    train_unet(unet, text_encoder, tokenizer, vae, unet_steps, batch_size, generator, image_size, device, log)

    pipeline = StableDiffusionPipeline(
        vae=vae.cpu(),
        text_encoder=text_encoder.cpu(),
        tokenizer=tokenizer,
        unet=unet.cpu(),
        scheduler=sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    log(f"saved to {out_dir}")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: python -m worker.demo_model.train --out DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.demo_model.train",
        description="Train the built-in shapes demo model (a tiny Stable Diffusion) and save it in diffusers format.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for the diffusers model")
    parser.add_argument("--vae-steps", type=int, default=1500, help="autoencoder training steps (default 1500)")
    parser.add_argument("--unet-steps", type=int, default=6000, help="UNet + text encoder steps (default 6000)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, data and noise (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="image side, a multiple of 32 (default 64)")
    args = parser.parse_args(argv)
    train_demo_model(
        args.out,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        image_size=args.image_size,
        log=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
