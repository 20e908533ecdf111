"""GPU memory and utilisation for the heartbeat, from NVML (`nvidia-ml-py`) where it is installed and a driver
answers; None elsewhere, so /metrics leaves the series out rather than reporting zeros."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class GpuUsage:
    """Reads one GPU's use: the one CUDA_VISIBLE_DEVICES gives this worker (NVML ignores that variable)."""

    def __init__(self, device: str):
        self._handle = None
        self._nvml = None
        if not device.startswith("cuda"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
            if visible.isdigit():
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
            self._nvml = pynvml
        except Exception as error:  # no library, no driver, or no such device: report nothing
            log.info("GPU use is not reported (NVML: %s)", error)

    def read(self) -> dict[str, float | int | None]:
        """{"gpu_memory_used_mb", "gpu_utilization" (0..1)}; both None without NVML."""
        if self._handle is None:
            return {"gpu_memory_used_mb": None, "gpu_utilization": None}
        try:
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            return {"gpu_memory_used_mb": int(memory.used // (1024 * 1024)), "gpu_utilization": rates.gpu / 100}
        except Exception as error:
            log.debug("NVML read failed: %s", error)
            return {"gpu_memory_used_mb": None, "gpu_utilization": None}
