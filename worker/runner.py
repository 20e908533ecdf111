"""The pipeline runner interface: one batch of compatible images in, pictures out.

The render service only talks to this interface, so tests can inject faults (out of
memory, NaN output) and benchmarks can simulate GPUs without touching the farm code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image as PILImage

ProgressCallback = Callable[[float], None]


class GpuOutOfMemoryError(RuntimeError):
    """The device ran out of memory for this batch; a smaller batch may fit."""


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to fix."""


@dataclass(frozen=True)
class RenderRequest:
    """Everything one pipeline call needs; items share all but prompt, negative prompt and seed."""

    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    steps: int
    guidance_scale: float
    width: int
    height: int
    sampler: str
    clip_skip: int = 1
    strength: float | None = None
    init_image: PILImage.Image | None = None
    loras: list[dict[str, Any]] = field(default_factory=list)
    mask_image: PILImage.Image | None = None  # inpainting ("L" mode): white is repainted, black kept

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, start: int, stop: int) -> RenderRequest:
        """The same request for items start..stop (used to split a batch that ran out of memory)."""
        return replace(
            self,
            prompts=self.prompts[start:stop],
            negative_prompts=self.negative_prompts[start:stop],
            seeds=self.seeds[start:stop],
        )


@dataclass
class RenderOutput:
    """The pictures of one call, in request order; `nan` marks outputs that were not finite.

    `nsfw` holds the safety checker's verdicts (empty when the model has no checker).
    """

    images: list[PILImage.Image]
    nan: list[bool]
    nsfw: list[bool] = field(default_factory=list)


class PipelineRunner(ABC):
    """Runs a loaded model; one instance per worker process, created once."""

    model_name: str
    model_hash: str
    device: str

    @abstractmethod
    def generate(self, request: RenderRequest, on_progress: ProgressCallback) -> RenderOutput:
        """Render the batch; calls on_progress with 0..1 as denoising advances."""
