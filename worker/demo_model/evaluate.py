"""Measure how faithfully a shapes model draws the colours its prompts ask for.

Run as `python -m worker.demo_model.evaluate DIR [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from worker.demo_model.judge import judge_colours
from worker.demo_model.shapes import COLOURS, SHAPES, prompt

__all__ = ["adherence_prompts", "evaluate_adherence", "judge_colours", "load_pipeline"]


def load_pipeline(model_dir: Path | str) -> StableDiffusionPipeline:
    """Load a diffusers folder from disk only (never the hub), on the CPU, with the progress bar off."""
    pipeline = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def adherence_prompts() -> list[tuple[str, str, str]]:
    """(shape colour, background colour, prompt) for every colour on every other colour, shapes in turn."""
    pairs = [(fg, bg) for fg in COLOURS for bg in COLOURS if fg != bg]
    return [(fg, bg, prompt(fg, SHAPES[i % len(SHAPES)], bg)) for i, (fg, bg) in enumerate(pairs)]


def evaluate_adherence(
    model_dir: Path | str,
    *,
    steps: int = 20,
    guidance_scale: float = 7.0,
    seed: int = 0,
    scheduler: str | None = None,
    grid_path: Path | None = None,
) -> dict:
    """Generate each colour pair once (one batch) and report the fractions with correct background, shape, both.

    `scheduler` names a diffusers scheduler class to sample with instead of the shipped one.
    """
    pipeline = load_pipeline(model_dir)
    if scheduler is not None:
        pipeline.scheduler = getattr(diffusers, scheduler).from_config(pipeline.scheduler.config)
    cases = adherence_prompts()
    images = pipeline(
        [text for _, _, text in cases],
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images
    results = []
    for (fg, bg, text), image in zip(cases, images, strict=True):
        got_bg, got_fg = judge_colours(image)
        results.append({"prompt": text, "background": got_bg, "shape": got_fg, "ok": (got_bg, got_fg) == (bg, fg)})
    if grid_path is not None:
        save_grid(images, Path(grid_path))
    count = len(cases)
    return {
        "background": sum(r["background"] == bg for r, (_, bg, _) in zip(results, cases, strict=True)) / count,
        "shape": sum(r["shape"] == fg for r, (fg, _, _) in zip(results, cases, strict=True)) / count,
        "both": sum(r["ok"] for r in results) / count,
        "count": count,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "scheduler": type(pipeline.scheduler).__name__,
        "results": results,
    }


def save_grid(images: np.ndarray, path: Path, columns: int = 7) -> None:
    """Save a batch of [0, 1] float images (N, H, W, 3) as one contact sheet, row by row."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    sheet = np.ones((rows * h, columns * w, 3), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((sheet * 255).round().astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: python -m worker.demo_model.evaluate DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.demo_model.evaluate",
        description="Generate every shape colour on every other background colour and report how often "
        "the background and shape colours match the prompt.",
    )
    parser.add_argument("model_dir", type=Path, help="diffusers folder of a shapes model")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    parser.add_argument("--guidance-scale", type=float, default=7.0, help="classifier-free guidance (default 7.0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--scheduler", help="diffusers scheduler class to sample with, e.g. EulerAncestralDiscreteScheduler"
    )
    parser.add_argument("--json", type=Path, help="also write the full report, per prompt, to this JSON file")
    parser.add_argument("--grid", type=Path, help="also save all generated images as one PNG contact sheet")
    parser.add_argument("--verbose", action="store_true", help="list every prompt the model got wrong")
    args = parser.parse_args(argv)
    report = evaluate_adherence(
        args.model_dir,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        scheduler=args.scheduler,
        grid_path=args.grid,
    )
    print(f"background colour correct: {report['background']:.1%}")
    print(f"shape colour correct:      {report['shape']:.1%}")
    print(f"both correct:              {report['both']:.1%} of {report['count']} images")
    if args.verbose:
        for result in report["results"]:
            if not result["ok"]:
                print(f"  wrong: {result['prompt']!r} -> {result['shape']} on {result['background']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
