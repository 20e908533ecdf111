"""Farm overhead with the images in an S3-compatible store, beside the same farm writing to a directory.

Uploads happen in the worker's saver threads while the next batch renders, so the farm/plain
ratio should be the same with either store. One run measures the plain diffusers loop, then the
whole farm with a directory store, then with the S3 store, on the same machine and model:

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python -m bench.s3_store \\
        --endpoint http://127.0.0.1:9000 --bucket sdfarm --out bench-results/s3.json
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import click

from bench.farm_overhead import farm_images_per_second, plain_loop_images_per_second
from bench.local_farm import BenchFarm
from worker.model_build.tiny import build_tiny_model


def farm_runs(work_dir: Path, model_dir: Path, images: int, repeats: int, steps: int, size: int, **store) -> list:
    """Images/s of `repeats` jobs through a farm of one CPU worker (one torch thread) with the given store."""
    farm = BenchFarm(work_dir, model=str(model_dir), max_batch=4, cpu_threads=1, **store)
    try:
        farm.start_api(processes=1)
        farm.start_workers(1)
        return [farm_images_per_second(farm, images, steps, size) for _ in range(repeats)]
    finally:
        farm.close()


@click.command()
@click.option("--endpoint", required=True, help="The store's S3 endpoint URL (MinIO, ...).")
@click.option("--bucket", required=True, help="An existing bucket the credentials may write to.")
@click.option("--images", default=64, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-results/s3.json"), show_default=True)
def main(endpoint: str, bucket: str, images: int, repeats: int, out: Path) -> None:
    """Compare the farm/plain ratio with a directory store and with an S3 store."""
    steps, size = 20, 64
    scratch = Path(tempfile.mkdtemp(prefix="sdfarm-bench-s3-"))
    model_dir = build_tiny_model(scratch / "models" / "tiny")
    plain = statistics.median(
        plain_loop_images_per_second(model_dir, images, 4, steps, size, threads=1) for _ in range(repeats)
    )
    stores = {
        "directory": {},
        "s3": {"object_store": f"s3://{bucket}/bench-{scratch.name}", "s3_endpoint_url": endpoint},
    }
    results: dict = {"plain_loop_images_per_second": round(plain, 3), "images": images, "steps": steps}
    for name, store in stores.items():
        runs = farm_runs(scratch / name, model_dir, images, repeats, steps, size, **store)
        farm = statistics.median(ips for ips, _ in runs)
        results[name] = {
            "farm_images_per_second": round(farm, 3),
            "farm_overhead_ratio": round(farm / plain, 3),
            "not_rendering_seconds": [breakdown["not_rendering_seconds"] for _, breakdown in runs],
        }
        click.echo(f"{name}: {farm:.2f} images/s, ratio {farm / plain:.3f} (plain loop {plain:.2f} images/s)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
