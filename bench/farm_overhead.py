"""Farm overhead: images/s of the whole farm (HTTP submit to every image stored) divided by
images/s of a plain in-process diffusers loop with the same model, size, steps and batch size."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import requests
import torch
from diffusers import StableDiffusionPipeline
from sqlalchemy import select

from bench.local_farm import BenchFarm
from models.image import Image
from worker.encoding import encode_png, encode_thumbnail

PROMPTS = [
    "a red circle on a blue background",
    "a green square on a white background",
    "a yellow triangle on a black background",
    "a purple circle on an orange background",
]


def plain_loop_images_per_second(
    model_dir: Path, images: int, batch: int, steps: int, size: int, threads: int
) -> float:
    """The baseline: the diffusers pipeline called in a loop, nothing else."""
    torch.set_num_threads(threads)
    pipeline = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True, safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

    def call(seed: int) -> None:
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)]
        pipeline(prompts, num_inference_steps=steps, height=size, width=size, generator=generators)

    call(0)  # warm-up, as the farm's workers do at load
    started = time.perf_counter()
    for index in range(images // batch):
        call(index * batch)
    return (images // batch * batch) / (time.perf_counter() - started)


def farm_images_per_second(farm: BenchFarm, images: int, steps: int, size: int) -> tuple[float, dict]:
    """Submit one job over HTTP and time it until its last image is stored; explain where time went."""
    cpu_before = farm.cpu_seconds()
    submitted = time.time()
    response = requests.post(
        f"{farm.url}/api/v1/jobs",
        json={
            "prompts": PROMPTS,
            "num_images": images // len(PROMPTS),
            "steps": steps,
            "width": size,
            "height": size,
            "seed": 1,
            "scheduler": "pndm",
        },
        timeout=60,
    )
    response.raise_for_status()
    job = farm.wait_for_job(response.json()["id"], interval=0.5)
    assert job["status"] == "succeeded", job
    farm_cpu = farm.cpu_seconds() - cpu_before
    farm.settle(job["model"])
    with farm.sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.job_id == job["id"])))
    finished = max(row.finished_at.timestamp() for row in rows)
    batches: dict[str, list[Image]] = defaultdict(list)
    for row in rows:
        batches[row.lease_token].append(row)
    render_seconds = sum(sum(r.render_seconds for r in batch) for batch in batches.values())
    first_start = min(row.started_at.timestamp() for row in rows)
    wall = finished - submitted
    breakdown = {
        "wall_seconds": round(wall, 3),
        "batches": len(batches),
        "queue_wait_seconds": round(first_start - submitted, 3),
        "render_seconds": round(render_seconds, 3),
        "not_rendering_seconds": round(wall - render_seconds, 3),
        # CPU work per image of every farm process (API, workers, Redis): unlike wall time, it does
        # not move with what other tenants of a shared machine take.
        "cpu_ms_per_image": round(farm_cpu / len(rows) * 1000, 2),
    }
    return len(rows) / wall, breakdown


def encoding_seconds_per_image(size: int) -> float:
    """PNG with infotext + WebP thumbnail for one picture (done beside the next batch, not in its way)."""
    from PIL import Image as PILImage

    picture = PILImage.effect_noise((size, size), 64).convert("RGB")
    started = time.perf_counter()
    for _ in range(50):
        encode_png(picture, "a prompt\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
        encode_thumbnail(picture)
    return (time.perf_counter() - started) / 50


def run(
    work_dir: Path, model_dir: Path, images: int = 64, batch: int = 4, steps: int = 20, size: int = 64, repeats: int = 3
) -> dict:
    """Measure both sides `repeats` times on this machine and report the medians.

    Both sides use one torch thread: on a small shared machine, two OpenMP threads stall
    whenever another process takes a core, which would measure the neighbours, not the farm.
    """
    threads = 1
    plain = [plain_loop_images_per_second(model_dir, images, batch, steps, size, threads) for _ in range(repeats)]
    farm = BenchFarm(work_dir, model=str(model_dir), max_batch=batch, cpu_threads=threads)
    try:
        farm.start_api(processes=1)
        cold_start = farm.start_workers(1)
        runs = [farm_images_per_second(farm, images, steps, size) for _ in range(repeats)]
    finally:
        farm.close()
    farm_ips = statistics.median(ips for ips, _ in runs)
    plain_ips = statistics.median(plain)
    return {
        "model": model_dir.name,
        "images": images,
        "batch": batch,
        "steps": steps,
        "size": f"{size}x{size}",
        "torch_threads": threads,
        "plain_loop_images_per_second": round(plain_ips, 3),
        "farm_images_per_second": round(farm_ips, 3),
        "farm_overhead_ratio": round(farm_ips / plain_ips, 3),
        "worker_cold_start_seconds": round(cold_start, 2),
        "png_and_thumbnail_ms_per_image": round(encoding_seconds_per_image(size) * 1000, 2),
        "farm_runs": [breakdown for _, breakdown in runs],
    }
