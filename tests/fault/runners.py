"""Runners with injected faults, loaded by real worker processes through SDFARM_RUNNER."""

from __future__ import annotations

import os
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
