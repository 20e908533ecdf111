"""Which GPUs a machine has, asked of nvidia-smi so the supervisor never initialises CUDA itself."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    """One visible NVIDIA GPU."""

    index: int
    name: str
    memory_mb: int


def list_gpus() -> list[Gpu]:
    """The GPUs nvidia-smi reports; empty when there is no driver or no GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in output.strip().splitlines():
        index, name, memory = (part.strip() for part in line.split(","))
        gpus.append(Gpu(int(index), name, int(float(memory))))
    return gpus


def parse_gpu_selection(selection: str, available: list[Gpu]) -> list[int] | None:
    """`all`, `none` or a comma list such as `0,2,3`; None means CPU workers. Raises ValueError."""
    selection = selection.strip().lower()
    if selection == "none":
        return None
    if selection == "all":
        if not available:
            raise ValueError(
                "--gpus all: no NVIDIA GPU is visible (nvidia-smi finds none); use --gpus none for CPU workers"
            )
        return [gpu.index for gpu in available]
    try:
        wanted = [int(part) for part in selection.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--gpus {selection!r}: expected all, none or a list such as 0,2,3") from None
    known = {gpu.index for gpu in available}
    missing = [index for index in wanted if index not in known]
    if missing:
        raise ValueError(f"--gpus: GPU {missing} not found; visible: {sorted(known) or 'none'}")
    return wanted
