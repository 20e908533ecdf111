"""BENCHMARKS.md's GPU tables from `scripts/gpu-check.sh`'s JSON.

    python -m bench.gpu_report gpu-results/gpu-check.json

Without a file it prints the tables with every figure "not measured", as BENCHMARKS.md shows them
until a GPU run fills them in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NOT_MEASURED = "not measured"
# What scripts/gpu-check.sh sweeps (bench.gpu_throughput --variants).
SWEEP_VARIANTS = ("eager", "channels_last", "fused_qkv")


def _figure(value, digits: int = 2) -> str:
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def _spread(block: dict | None, digits: int = 2) -> str:
    """Median with the range of the rounds."""
    if not block:
        return NOT_MEASURED
    return f"{block['median']:.{digits}f} ({block['min']:.{digits}f} to {block['max']:.{digits}f})"


def farm_table(check: dict) -> list[str]:
    """One row per batch size: the three sides and the ratios (the runner alone runs in the configuration
    the worker chose, so farm/runner is the farm's own cost and runner/plain what that configuration gains)."""
    lines = [
        "| batch | plain loop (images/s) | DiffusersRunner alone | whole farm | runner/plain | farm/runner "
        "| farm/plain (target 0.98) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for batch in (8, 16):
        run = (check.get(f"gpu-farm-batch-{batch}") or {}).get("gpu_farm") or {}
        speeds, ratios = run.get("images_per_second", {}), run.get("ratios", {})
        lines.append(
            f"| {batch} | {_spread(speeds.get('plain'))} | {_spread(speeds.get('runner'))} | "
            f"{_spread(speeds.get('farm'))} | {_spread(ratios.get('runner_over_plain'), 3)} | "
            f"{_spread(ratios.get('farm_over_runner'), 3)} | {_spread(ratios.get('farm_over_plain'), 3)} |"
        )
    return lines


def cold_start_table(check: dict) -> list[str]:
    """The worker's start at batch 8: first (empty tuning cache) and again (the cache it left)."""
    lines = [
        "| start | to ready (s, target 10) | imports | load | tuning | warm-up "
        "| configuration chosen (images/s measured) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    starts = ((check.get("gpu-farm-batch-8") or {}).get("gpu_farm") or {}).get("cold_start", {})
    for name in ("first", "cached"):
        start = starts.get(name, {})
        configuration = start.get("configuration") or {}
        chosen = (
            f"{configuration['name']} ({configuration.get('measured')})" if configuration.get("name") else NOT_MEASURED
        )
        lines.append(
            f"| {name} | {_figure(start.get('seconds_to_ready'), 1)} | {_figure(start.get('imports_seconds'), 1)} | "
            f"{_figure(start.get('load_seconds'), 1)} | {_figure(start.get('tuning_seconds'), 1)} | "
            f"{_figure(start.get('warm_up_seconds'), 1)} | {chosen} |"
        )
    return lines


def throughput_table(check: dict) -> list[str]:
    """The sweep: images/s, UNet iterations/s and the fraction of the dense peak per variant and batch
    size, and how far each variant's pictures are from eager's on the same seeds."""
    lines = [
        "| variant | batch | images/s | UNet iterations/s | TFLOP per image | fraction of 989 TFLOP/s (target 0.40) "
        "| max difference from eager (of 255) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    sweeps = ("gpu-throughput", "gpu-throughput-graphs")  # the second: batch 1 through CUDA graphs
    measured = [run for sweep in sweeps for run in (check.get(sweep) or {}).get("runs", [])]
    runs: dict[tuple[str, int], dict] = {}
    for run in measured:  # the first sweep's run of a (variant, batch) stands; the second adds CUDA graphs
        runs.setdefault((run.get("variant", "eager"), run["batch"]), run)
    for variant, batch in runs or [(variant, batch) for variant in SWEEP_VARIANTS for batch in (1, 8, 16)]:
        run = runs.get((variant, batch), {})
        lines.append(
            f"| {variant} | {batch} | {_figure(run.get('images_per_second'))} "
            f"| {_figure(run.get('unet_iterations_per_second'), 1)} | {_figure(run.get('tflop_per_image'))} "
            f"| {_figure(run.get('fraction_of_h100_bf16_peak'), 3)} "
            f"| {_figure(run.get('max_difference_from_eager'), 1)} |"
        )
    return lines


def main() -> None:
    """Print the three tables as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("check", type=Path, nargs="?", help="gpu-results/gpu-check.json")
    args = parser.parse_args()
    check = json.loads(args.check.read_text()) if args.check else {}
    for table in (farm_table(check), cold_start_table(check), throughput_table(check)):
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
