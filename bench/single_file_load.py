"""Loading a full-size single-file checkpoint offline: how long each stage takes, and that it renders.

Writes a random-weight checkpoint of a published release (SD 1.5, SD 2.1 or SDXL base) in the
original single-file layout, fp16 as people download them, alone in a fresh directory; then
times reading its header and generating the configs, the load through sdfarm's loader, and
one small image.

    python -m bench.single_file_load --architecture sd1 --out bench-results/single-file-sd1.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def measure(architecture: str, device: str) -> dict:
    """Build, configure, load and render once; seconds per stage and the file's size."""
    from models.catalog import ModelCatalog, safetensors_header
    from worker.checkpoint_config import write_config_folder
    from worker.diffusers_runner import DiffusersRunner
    from worker.model_build.release import release_single_file
    from worker.runner import RenderRequest

    with tempfile.TemporaryDirectory(prefix="sdfarm-single-file-") as folder:
        started = time.perf_counter()
        checkpoint = release_single_file(architecture, Path(folder) / f"release-{architecture}.safetensors")
        written = time.perf_counter()
        entry = ModelCatalog(Path(folder)).get(checkpoint.stem)
        shapes, _metadata = safetensors_header(checkpoint)
        write_config_folder(shapes, entry.architecture, entry.options.prediction_type, Path(folder) / "configs")
        configured = time.perf_counter()
        runner = DiffusersRunner(entry, device)
        loaded = time.perf_counter()
        request = RenderRequest(["a castle on a hill"], [""], [1], 2, 7.5, 64, 64, "euler")
        (picture,) = runner.generate(request, lambda _fraction: None).images
        rendered = time.perf_counter()
        return {
            "architecture": entry.architecture,
            "device": device,
            "file_gb": round(checkpoint.stat().st_size / 1e9, 2),
            "write_seconds": round(written - started, 1),
            "header_and_configs_seconds": round(configured - written, 3),
            "load_seconds": round(loaded - configured, 1),
            "render_64px_2_steps_seconds": round(rendered - loaded, 1),
            "pipeline": type(runner.pipeline).__name__,
            "finite_image": bool(np.isfinite(np.asarray(picture, dtype=np.float32)).all()),
        }


def main() -> None:
    """Command-line entry point: prints the figures as JSON and writes them to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", choices=["sd1", "sd2", "sdxl"], default="sd1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench-results/single-file.json"))
    arguments = parser.parse_args()
    figures = measure(arguments.architecture, arguments.device)
    print(json.dumps(figures, indent=2))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
