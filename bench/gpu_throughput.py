"""GPU throughput of an SD 1.5-architecture pipeline: 512x512, guidance on, 30 and 50 steps,
batch 1..16, and the fraction of the H100's dense bf16 peak that is used.

Built from SD 1.5's published configuration with random weights: the arithmetic is the
same as with the real weights, and nothing is downloaded. FLOPs are counted with
torch.utils.flop_counter on one call of each component.

    python -m bench.gpu_throughput --out gpu.json            # on a CUDA machine
    python -m bench.gpu_throughput --tiny --out cpu.json     # smoke test of the script on a CPU
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTextModel

from worker.model_build.release import release_components
from worker.model_build.tiny import SD1_SCHEDULE, clip_tokenizer, tiny_text_config, tiny_unet, tiny_vae

H100_DENSE_BF16_FLOPS = 989e12


def sd15_components(dtype: torch.dtype) -> dict:
    """UNet, VAE and CLIP text encoder with SD 1.5's shapes (860M + 84M + 123M parameters)."""
    release = release_components("sd1")
    return {name: getattr(release, name).to(dtype) for name in ("unet", "vae", "text_encoder")}


def tiny_components(dtype: torch.dtype, tokenizer) -> dict:
    """The tiny model's shapes, for checking the script itself on a CPU."""
    return {
        "unet": tiny_unet(64).to(dtype),
        "vae": tiny_vae(64).to(dtype),
        "text_encoder": CLIPTextModel(tiny_text_config(tokenizer)).to(dtype),
    }


def build_pipeline(tiny: bool, device: str, dtype: torch.dtype, compile_unet: bool) -> StableDiffusionPipeline:
    """Assemble the pipeline (the tokenizer does not change the compute: prompts are padded to 77)."""
    tokenizer = clip_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    components = tiny_components(dtype, tokenizer) if tiny else sd15_components(dtype)
    pipeline = StableDiffusionPipeline(
        tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(
            **{k: v for k, v in SD1_SCHEDULE.items() if k not in {"skip_prk_steps", "set_alpha_to_one"}}
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **components,
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    if device.startswith("cuda"):
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipeline.unet = torch.compile(pipeline.unet, mode="max-autotune", fullgraph=True)
    return pipeline


def flops_per_image(pipeline: StableDiffusionPipeline, steps: int, size: int, device: str) -> float:
    """Text encoder + `steps` UNet calls on the guided pair + one VAE decode, for one image."""
    dtype = pipeline.unet.dtype
    latent = size // 8
    tokens = torch.zeros((2, 77), dtype=torch.long, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as text_counter:
            context = pipeline.text_encoder(tokens)[0]
        with FlopCounterMode(display=False) as unet_counter:
            pipeline.unet(torch.randn(2, 4, latent, latent, device=device, dtype=dtype), 10, context)
        with FlopCounterMode(display=False) as vae_counter:
            pipeline.vae.decode(torch.randn(1, 4, latent, latent, device=device, dtype=dtype))
    return text_counter.get_total_flops() + steps * unet_counter.get_total_flops() + vae_counter.get_total_flops()


def images_per_second(pipeline, batch: int, steps: int, size: int, device: str, repeats: int) -> float:
    """Median images/s of whole pipeline calls (prompt to decoded pixels) after one warm-up call."""
    prompts = ["a photo of a cat"] * batch

    def call() -> None:
        pipeline(prompts, num_inference_steps=steps, height=size, width=size, output_type="np", guidance_scale=7.5)

    call()
    timings = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    timings.sort()
    return batch / timings[len(timings) // 2]


def main() -> None:
    """Run the sweep and print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-throughput.json"))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, 64x64, for a CPU smoke test")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (max-autotune)")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--steps", default="30,50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype) if device == "cuda" else torch.float32
    size = 64 if args.tiny else 512
    pipeline = build_pipeline(args.tiny, device, dtype, args.compile)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "size": f"{size}x{size}",
        "compile": args.compile,
        "architecture": "tiny" if args.tiny else "sd15",
        "torch": torch.__version__,
        "runs": [],
    }
    for steps in (int(s) for s in args.steps.split(",")):
        flops = flops_per_image(pipeline, steps, size, device)
        for batch in (int(b) for b in args.batches.split(",")):
            ips = images_per_second(pipeline, batch, steps, size, device, args.repeats)
            run = {
                "steps": steps,
                "batch": batch,
                "images_per_second": round(ips, 3),
                "unet_iterations_per_second": round(ips * steps, 1),
                "tflop_per_image": round(flops / 1e12, 2),
                "fraction_of_h100_bf16_peak": round(ips * flops / H100_DENSE_BF16_FLOPS, 4),
            }
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
