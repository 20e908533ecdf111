"""What a worker process reports in its heartbeat: state, current job, throughput."""

from __future__ import annotations

import threading
import time


class WorkerStats:
    """Thread-safe counters updated by the render loop and read by the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "starting"
        self.current_job_id: int | None = None
        self.images_done = 0
        self.model_loads = 0
        self.configuration: dict | None = None
        self._window: list[tuple[float, int]] = []

    def loading(self) -> None:
        """The pipeline is being loaded."""
        with self._lock:
            self.state = "loading"

    def loaded(self) -> None:
        """The pipeline is loaded; count it (tests assert one load per process)."""
        with self._lock:
            self.model_loads += 1
            self.state = "idle"

    def configured(self, configuration: dict) -> None:
        """The configuration warm-up chose, its measured speed and the start-up times (shown in /api/v1/workers)."""
        with self._lock:
            self.configuration = configuration

    def busy(self, job_id: int) -> None:
        """A batch of `job_id` started."""
        with self._lock:
            self.state = "busy"
            self.current_job_id = job_id

    def idle(self) -> None:
        """No batch is running."""
        with self._lock:
            self.state = "idle"
            self.current_job_id = None

    def finished(self, images: int) -> None:
        """`images` more were stored."""
        with self._lock:
            self.images_done += images
            self._window.append((time.monotonic(), images))

    def images_per_second(self, window_seconds: float = 60.0) -> float:
        """Throughput over the last minute."""
        now = time.monotonic()
        with self._lock:
            self._window = [(t, n) for t, n in self._window if now - t <= window_seconds]
            if not self._window:
                return 0.0
            span = max(now - self._window[0][0], 1.0)
            return round(sum(n for _, n in self._window) / span, 3)

    def snapshot(self) -> dict:
        """A consistent copy for the heartbeat."""
        ips = self.images_per_second()
        with self._lock:
            return {
                "state": self.state,
                "current_job_id": self.current_job_id,
                "images_done": self.images_done,
                "images_per_second": ips,
                "model_loads": self.model_loads,
                "configuration": self.configuration,
            }
