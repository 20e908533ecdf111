"""`sdfarm bench`: runs the chosen parts, prints each figure, writes everything as JSON."""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from sdfarm.scratch_database import scratch_database
from worker.model_build.tiny import build_tiny_model


def machine() -> dict:
    """Where the figures came from."""
    import os

    import torch

    return {
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_suite(parts: list[str], out: Path, database_url: str | None, quick: bool) -> dict:
    """Run `parts` (farm, control-plane, adherence) in a scratch directory; write `out`."""
    scratch = Path(tempfile.mkdtemp(prefix="sdfarm-bench-"))
    results: dict = {"machine": machine(), "parts": {}}
    try:
        models_dir = scratch / "models"
        tiny = build_tiny_model(models_dir / "tiny")
        if "farm" in parts:
            from bench.farm_overhead import run as farm_overhead

            click.echo("farm overhead (tiny model, real workers) ...")
            started = time.monotonic()
            figures = farm_overhead(scratch / "farm", tiny, images=32 if quick else 64, repeats=1 if quick else 3)
            results["parts"]["farm_overhead"] = figures
            click.echo(
                f"  ratio {figures['farm_overhead_ratio']} ({figures['farm_images_per_second']} vs "
                f"{figures['plain_loop_images_per_second']} images/s) in {time.monotonic() - started:.0f}s"
            )
        if "control-plane" in parts:
            from bench.control_plane import run as control_plane

            shutil.copytree(tiny, models_dir / "sim")
            click.echo("control plane (SIMULATED GPUs: each batch is a fixed sleep) ...")
            counts = (1, 4) if quick else (1, 8, 32)
            with scratch_database(database_url) as url:
                figures = control_plane(scratch / "control", models_dir / "sim", url, worker_counts=counts)
            results["parts"]["control_plane"] = figures
            click.echo(
                f"  accept 10,000 images: {figures['accept_10000_images_seconds']}s; "
                f"poll median {figures['status_poll']['median_ms']} ms, p99 {figures['status_poll']['p99_ms']} ms"
            )
            for row in figures["bookkeeping"]:
                click.echo(f"  {row['workers']:>2} simulated workers: {row['images_per_second']} images/s recorded")
        if "adherence" in parts:
            from models.catalog import SHAPES_MODEL_DIR
            from worker.demo_model.evaluate import evaluate_adherence

            click.echo("prompt adherence of the shipped shapes model ...")
            figures = evaluate_adherence(SHAPES_MODEL_DIR)
            results["parts"]["adherence"] = {k: v for k, v in figures.items() if k != "results"}
            click.echo(f"  {json.dumps(results['parts']['adherence'])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _write(out, results)


def run_central(out: Path, gpu_counts: list[int], seconds: float, pollers: int) -> dict:
    """Central CPU per image at each simulated fleet size (bench/central_cost.py); write `out`."""
    from bench.central_cost import run as central_cost

    scratch = Path(tempfile.mkdtemp(prefix="sdfarm-central-"))
    results: dict = {"machine": machine(), "parts": {}}
    click.echo("central cost (SIMULATED GPUs: 8 images per 1.6 s batch each; fleet CPU not counted) ...")
    try:
        results["parts"]["central_cost"] = central_cost(
            scratch, gpu_counts, seconds=seconds, latency_pollers=pollers, report=lambda line: click.echo("  " + line)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _write(out, results)


def _write(out: Path, results: dict) -> dict:
    """Write the figures as JSON to `out` and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"wrote {out}")
    return results
