"""GPU throughput of an SD 1.5-architecture pipeline: 512x512, guidance on, 30 and 50 steps,
batch 1..16, and the fraction of the H100's dense bf16 peak that is used, for each way of running
the same weights (`--variants`), so each lever is measured on the machine it is meant for.

Built from SD 1.5's published configuration with random weights: the arithmetic is the
same as with the real weights, and nothing is downloaded. FLOPs are counted with
torch.utils.flop_counter on one call of each component. Each variant's pictures are compared
with eager's from the same seeds, so a lever that changes the images shows it.

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

# eager: the weights as loaded; channels_last: UNet and VAE in that memory format; fused_qkv: each
# attention's query, key and value projections as one matrix product (diffusers'
# fuse_qkv_projections); compile: the UNet through torch.compile as the farm's worker compiles it;
# cuda_graphs: the same in reduce-overhead mode (one CUDA graph per call shape: use few batch sizes).
VARIANTS = ("eager", "channels_last", "fused_qkv", "compile", "cuda_graphs")


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


def build_pipeline(tiny: bool, device: str, dtype: torch.dtype) -> StableDiffusionPipeline:
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
    return pipeline


def use_variant(pipeline: StableDiffusionPipeline, eager_unet: torch.nn.Module, name: str) -> None:
    """Put the pipeline into variant `name` (one of VARIANTS), whichever one it was in before."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
    pipeline.unet = eager_unet
    if getattr(eager_unet, "original_attn_processors", None) is not None:
        pipeline.unfuse_qkv_projections()
    memory_format = torch.channels_last if name == "channels_last" else torch.contiguous_format
    pipeline.unet.to(memory_format=memory_format)
    pipeline.vae.to(memory_format=memory_format)
    if name == "fused_qkv":
        pipeline.fuse_qkv_projections()
    elif name in ("compile", "cuda_graphs"):
        import torch._inductor.config as inductor

        inductor.conv_1x1_as_mm = True  # as the farm's worker compiles (DiffusersRunner.configure)
        mode = "reduce-overhead" if name == "cuda_graphs" else None
        pipeline.unet = torch.compile(eager_unet, mode=mode, dynamic=False)


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


def images_per_second(pipeline, batch: int, steps: int, size: int, device: str, repeats: int) -> tuple[float, object]:
    """Median images/s of whole pipeline calls (prompt to decoded pixels) after one warm-up call, and
    the pictures of the seeded warm-up call (the same seeds for every variant)."""
    prompts = ["a photo of a cat"] * batch

    def call(seeded: bool = False):
        generator = torch.Generator("cpu").manual_seed(1) if seeded else None
        return pipeline(
            prompts,
            num_inference_steps=steps,
            height=size,
            width=size,
            output_type="np",
            guidance_scale=7.5,
            generator=generator,
        ).images

    pictures = call(seeded=True)
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
    return batch / timings[len(timings) // 2], pictures


def main() -> None:
    """Run the sweep and print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-throughput.json"))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, 64x64, for a CPU smoke test")
    parser.add_argument("--variants", default="eager,channels_last,fused_qkv", help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--steps", default="30,50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype) if device == "cuda" else torch.float32
    size = 64 if args.tiny else 512
    variants = args.variants.split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r}; expected some of {', '.join(VARIANTS)}")
    pipeline = build_pipeline(args.tiny, device, dtype)
    eager_unet = pipeline.unet
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "size": f"{size}x{size}",
        "architecture": "tiny" if args.tiny else "sd15",
        "torch": torch.__version__,
        "runs": [],
    }
    eager_pictures: dict[tuple[int, int], object] = {}
    for steps in (int(s) for s in args.steps.split(",")):
        flops = flops_per_image(pipeline, steps, size, device)  # the same arithmetic in every variant
        for name in variants:
            use_variant(pipeline, eager_unet, name)
            for batch in (int(b) for b in args.batches.split(",")):
                ips, pictures = images_per_second(pipeline, batch, steps, size, device, args.repeats)
                if name == "eager":
                    eager_pictures[(steps, batch)] = pictures
                reference = eager_pictures.get((steps, batch))
                run = {
                    "variant": name,
                    "steps": steps,
                    "batch": batch,
                    "images_per_second": round(ips, 3),
                    "unet_iterations_per_second": round(ips * steps, 1),
                    "tflop_per_image": round(flops / 1e12, 2),
                    "fraction_of_h100_bf16_peak": round(ips * flops / H100_DENSE_BF16_FLOPS, 4),
                    # Out of 255, against eager's pictures from the same seeds (None when eager did not run first).
                    "max_difference_from_eager": None
                    if reference is None
                    else round(float(abs(pictures - reference).max()) * 255, 2),
                }
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
