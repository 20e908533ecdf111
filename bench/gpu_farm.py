"""`sdfarm bench gpu-farm`: what the farm costs on its own path, measured in one run.

Three sides render the same images (model, batch, steps, size, sampler, seeds), in rounds that
interleave them so a noisy neighbour or a warming GPU weighs on all three alike:

- `plain`: the diffusers pipeline called in a loop, as anyone would write it;
- `runner`: the farm's DiffusersRunner.generate alone (no Celery, no saving), its calls alternating
  with the plain loop's in the same process;
- `farm`: the whole farm, HTTP submit to every PNG and row stored, through a real worker.

Plus the worker's cold start (`sdfarm worker` to ready), split by the worker itself into imports,
loading, tuning and warm-up, once with an empty tuning cache and once with the cache it left.

On CUDA the model has SD 1.5's architecture (random fp16 weights, worker/model_build/release.py,
512x512); on the CPU it is the tiny model (64x64), as a smoke test of the same code.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from bench.farm_overhead import PROMPTS, encoding_seconds_per_image, farm_images_per_second
from bench.local_farm import BenchFarm


def build_model(models_dir: Path, device: str) -> Path:
    """SD 1.5's architecture on CUDA, the tiny model on the CPU; PNDM and the bench's size as defaults."""
    import torch

    if device.startswith("cuda"):
        from worker.model_build.release import release_folder

        folder = release_folder("sd1", models_dir / "sd15-random", torch.float16, device)
        size, steps = 512, 30
    else:
        from worker.model_build.tiny import build_tiny_model

        folder = build_tiny_model(models_dir / "tiny-bench")  # not "tiny": the built-in model has that name
        size, steps = 64, 10
    defaults = {"width": size, "height": size, "steps": steps, "sampler": "pndm", "guidance_scale": 7.5}
    (folder / "sdfarm.json").write_text(json.dumps(defaults))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the build's copies are gone; the sides load their own
    return folder


class PlainLoop:
    """The baseline: StableDiffusionPipeline.from_pretrained and a loop of calls, nothing else."""

    def __init__(self, model_dir: Path, device: str):
        import diffusers
        import torch
        from diffusers import StableDiffusionPipeline

        diffusers.utils.logging.disable_progress_bar()
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.pipeline = StableDiffusionPipeline.from_pretrained(
            model_dir, dtype=dtype, local_files_only=True, safety_checker=None
        ).to(device)
        self.pipeline.set_progress_bar_config(disable=True)

    def render(self, prompts: list[str], seeds: list[int], steps: int, size: int) -> None:
        """One call for the batch; PIL images out, like the farm's."""
        import torch

        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        self.pipeline(
            prompts, num_inference_steps=steps, height=size, width=size, guidance_scale=7.5, generator=generators
        )


class RunnerAlone:
    """The farm's DiffusersRunner as the worker uses it, without Celery or saving."""

    def __init__(self, model_dir: Path, device: str):
        from models.catalog import ModelCatalog
        from worker.diffusers_runner import DiffusersRunner

        self.runner = DiffusersRunner(ModelCatalog(model_dir.parent, str(model_dir)).get(None), device)

    def render(self, prompts: list[str], seeds: list[int], steps: int, size: int) -> None:
        """One generate call, with a progress callback like the worker's."""
        from worker.runner import RenderRequest

        progress = {"fraction": 0.0}
        request = RenderRequest(prompts, [""] * len(prompts), seeds, steps, 7.5, size, size, "pndm")
        self.runner.generate(request, lambda fraction: progress.__setitem__("fraction", fraction))


def paired_images_per_second(
    sides: dict, images: int, batch: int, steps: int, size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Images/s and CPU milliseconds per image of each in-process side over `images // batch` calls
    each, the calls alternating A B B A ... so that load that comes and goes on a shared machine
    falls on both sides alike."""
    import torch

    calls = max(1, images // batch)
    seconds = dict.fromkeys(sides, 0.0)
    cpu = dict.fromkeys(sides, 0.0)
    names = list(sides)
    for call in range(calls):
        seeds = list(range(call * batch, (call + 1) * batch))
        prompts = [PROMPTS[seed % len(PROMPTS)] for seed in seeds]
        for name in names if call % 2 == 0 else reversed(names):
            started, cpu_started = time.perf_counter(), time.process_time()
            sides[name].render(prompts, seeds, steps, size)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - started
            cpu[name] += time.process_time() - cpu_started
    rendered = calls * batch
    return (
        {name: rendered / spent for name, spent in seconds.items()},
        {name: round(used / rendered * 1000, 2) for name, used in cpu.items()},
    )


def _spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(value, 3) for value in values],
    }


def _worker_start(farm: BenchFarm, gpus: str) -> dict:
    """Start one worker; its cold start as the bench saw it and as the worker split it."""
    seconds = farm.start_workers(1, timeout=900, gpus=gpus)
    (record,) = [row for row in farm.worker_rows() if row["state"] == "idle"]
    configuration = record.get("configuration") or {}
    return {"seconds_to_ready": round(seconds, 2), **configuration.get("startup", {}), "configuration": configuration}


def run(
    work_dir: Path,
    device: str,
    batch: int,
    steps: int | None = None,
    images: int | None = None,
    rounds: int = 3,
    tune: str = "auto",
    restart: bool = True,
) -> dict:
    """Build the model, load the three sides, run `rounds` interleaved rounds; return the figures."""
    import torch

    model_dir = build_model(work_dir / "models", device)
    defaults = json.loads((model_dir / "sdfarm.json").read_text())
    steps = steps or defaults["steps"]
    size = defaults["width"]
    images = images or 4 * batch
    images = max(len(PROMPTS), images // len(PROMPTS) * len(PROMPTS))  # the farm's job: whole prompts
    gpus = "0" if device.startswith("cuda") else "none"
    farm = BenchFarm(work_dir / "farm", model=str(model_dir), max_batch=batch, tune=tune)
    figures: dict = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "architecture": "sd15" if device.startswith("cuda") else "tiny",
        "dtype": "float16" if device.startswith("cuda") else "float32",
        "batch": batch,
        "steps": steps,
        "size": f"{size}x{size}",
        "sampler": "pndm",
        "guidance_scale": 7.5,
        "images_per_side_per_round": images,
        "rounds": rounds,
        "tune": tune,
        "torch": torch.__version__,
    }
    try:
        farm.start_api(processes=2)
        cold = {"first": _worker_start(farm, gpus)}
        sides = {"plain": PlainLoop(model_dir, device), "runner": RunnerAlone(model_dir, device)}
        # The runner alone runs as the worker chose to (eager, compiled...): farm/runner is then what
        # the farm itself costs, runner/plain what the configuration gains.
        sides["runner"].runner.configure(cold["first"]["configuration"].get("name", "eager"))
        for side in sides.values():  # their warm-up at the served shape, as the worker's
            side.render([PROMPTS[i % len(PROMPTS)] for i in range(batch)], list(range(batch)), 2, size)
        measured: dict[str, list[float]] = {"plain": [], "runner": [], "farm": []}
        cpu_ms: dict[str, list[float]] = {"plain": [], "runner": [], "farm": []}
        farm_runs = []
        for number in range(rounds):
            # The farm goes first in every other round, so a trend in the load favours neither side.
            for part in ("farm", "in-process") if number % 2 else ("in-process", "farm"):
                if part == "farm":
                    farm_ips, breakdown = farm_images_per_second(farm, images, steps, size)
                    measured["farm"].append(farm_ips)
                    cpu_ms["farm"].append(breakdown["cpu_ms_per_image"])
                    farm_runs.append(breakdown)
                else:
                    speeds, cpu_used = paired_images_per_second(sides, images, batch, steps, size)
                    for name, value in speeds.items():
                        measured[name].append(value)
                        cpu_ms[name].append(cpu_used[name])
            print(f"round {number + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in measured.items()), flush=True)
        if restart:
            farm.stop_workers()
            cold["cached"] = _worker_start(farm, gpus)
    finally:
        farm.close()
    ratio = {
        f"{side}_over_plain": _spread(
            [value / base for value, base in zip(measured[side], measured["plain"], strict=True)]
        )
        for side in ("runner", "farm")
    }
    ratio["farm_over_runner"] = _spread(
        [farm / runner for farm, runner in zip(measured["farm"], measured["runner"], strict=True)]
    )
    # On the CPU the farm's CPU work per image against the plain loop's, measured per round: what
    # the farm adds, whatever share of the machine its neighbours took meanwhile.
    ratio["farm_cpu_over_plain_cpu"] = _spread(
        [farm / plain for farm, plain in zip(cpu_ms["farm"], cpu_ms["plain"], strict=True)]
    )
    figures.update(
        images_per_second={side: _spread(values) for side, values in measured.items()},
        cpu_ms_per_image={side: _spread(values) for side, values in cpu_ms.items()},
        ratios=ratio,
        farm_runs=farm_runs,
        cold_start=cold,
        png_and_thumbnail_ms_per_image=round(encoding_seconds_per_image(size) * 1000, 2),
    )
    return figures


def main(out: Path, **options) -> dict:
    """Run on CUDA if there is a GPU, else on the CPU; print the figures and write them to `out`."""
    import shutil
    import tempfile

    import torch

    from bench.suite import machine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scratch = Path(tempfile.mkdtemp(prefix="sdfarm-gpu-farm-"))
    try:
        figures = {"machine": machine(), "gpu_farm": run(scratch, device, **options)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = figures["gpu_farm"]
    print(json.dumps({key: summary[key] for key in ("images_per_second", "ratios")}, indent=1))
    print(
        json.dumps(
            {
                name: {k: v for k, v in start.items() if k != "configuration"}
                for name, start in summary["cold_start"].items()
            }
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"wrote {out}")
    return figures
