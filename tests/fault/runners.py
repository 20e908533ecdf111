"""Runners with injected faults, loaded by real worker processes through SDFARM_RUNNER."""

from __future__ import annotations

import os
import time
from pathlib import Path

from models.catalog import ModelEntry
from worker.diffusers_runner import DiffusersRunner
from worker.runner import GpuOutOfMemoryError, PipelineRunner, ProgressCallback, RenderOutput, RenderRequest


class PoisonRunner(PipelineRunner):
    """The real pipeline, except that a prompt containing 'poison' kills the process outright."""

    def __init__(self, entry: ModelEntry, device: str, lora_dir: Path | None = None):
        self.inner = DiffusersRunner(entry, device, lora_dir)
        self.model_name, self.model_hash, self.device = entry.name, self.inner.model_hash, device

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Die like a segfaulting CUDA kernel would, or render."""
        if any("poison" in prompt for prompt in request.prompts):
            os._exit(139)
        return self.inner.generate(request, on_progress)


class SmallGpuRunner(PipelineRunner):
    """The real pipeline on a pretend GPU that fits two images per call, and no image that says 'huge'."""

    def __init__(self, entry: ModelEntry, device: str, lora_dir: Path | None = None):
        self.inner = DiffusersRunner(entry, device, lora_dir)
        self.model_name, self.model_hash, self.device = entry.name, self.inner.model_hash, device

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Raise out-of-memory for batches over two images or any 'huge' prompt."""
        if len(request) > 2 or any("huge" in prompt for prompt in request.prompts):
            raise GpuOutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.inner.generate(request, on_progress)


class PacedRunner(PipelineRunner):
    """The real pipeline, paced like a real model on a GPU: each image takes at least
    SDFARM_FAULT_IMAGE_SECONDS (default 1.5; SD 1.5 at 512x512 renders at about that rate).

    The tiny model renders in a tenth of that, so without pacing a fault run would race its own
    recoveries: the job could end before the faults planned for its last part fire. The wait is
    spread over the denoising steps, so a canceled batch still stops at its next step.
    """

    def __init__(self, entry: ModelEntry, device: str, lora_dir: Path | None = None):
        self.inner = DiffusersRunner(entry, device, lora_dir)
        self.model_name, self.model_hash, self.device = entry.name, self.inner.model_hash, device
        self.image_seconds = float(os.environ.get("SDFARM_FAULT_IMAGE_SECONDS", "1.5"))

    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Render, waiting at each step until its share of the batch's time has passed."""
        started, duration, reached = time.monotonic(), self.image_seconds * len(request), [0.0]

        def paced(fraction: float) -> None:
            while (delay := started + duration * fraction - time.monotonic()) > 0:
                time.sleep(min(delay, 0.2))
                on_progress(reached[0])  # lets a withdrawn batch stop during the wait
            reached[0] = fraction
            on_progress(fraction)

        return self.inner.generate(request, paced)
