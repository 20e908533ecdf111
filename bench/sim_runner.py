"""A SIMULATED GPU for control-plane benchmarks: every pipeline call is a fixed sleep.

Lets dozens of workers run on a small machine, so the farm's own bookkeeping (claims,
leases, PNG writes, database rows) is what gets measured. Never used for image figures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image as PILImage

from models.catalog import ModelEntry
from worker.runner import PipelineRunner, ProgressCallback, RenderOutput, RenderRequest

SLEEP_ENV = "SDFARM_SIM_BATCH_SECONDS"


class SleepRunner(PipelineRunner):
    """Sleeps SDFARM_SIM_BATCH_SECONDS per call (default 0.1) and returns flat grey pictures."""

    def __init__(self, entry: ModelEntry, device: str, lora_dir: Path | None = None):
        self.model_name, self.model_hash, self.device = entry.name, "simulated0", device
        self.seconds = float(os.environ.get(SLEEP_ENV, "0.1"))

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Pretend to denoise: report progress, sleep, return one picture per item."""
        time.sleep(self.seconds)
        on_progress(1.0)
        pictures = [
            PILImage.new("RGB", (request.width, request.height), (seed % 256, 128, 128)) for seed in request.seeds
        ]
        return RenderOutput(images=pictures, nan=[False] * len(pictures))
