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
        # (batch started, batch stored, images) for the batches of the last minute of work.
        self._window: list[tuple[float, float, int]] = []

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

    def finished(self, images: int, started: float | None = None) -> None:
        """`images` more were stored, from a batch that began at `started` (time.monotonic())."""
        now = time.monotonic()
        with self._lock:
            self.images_done += images
            self._window.append((now if started is None else started, now, images))

    def images_per_second(self, window_seconds: float = 60.0) -> float:
        """Throughput over the worker's last minute of work: images stored over the time from the first
        of those batches starting to the last one stored.

        Measured against the last batch, not the clock, so the figure says how fast this worker
        renders and stays right while it waits for work (it used to fall to 0 a minute after a job).
        """
        with self._lock:
            if not self._window:
                return 0.0
            last = self._window[-1][1]
            self._window = [entry for entry in self._window if last - entry[1] <= window_seconds]
            began = min(entry[0] for entry in self._window)
            span = max(last - began, 0.001)
            return round(sum(entry[2] for entry in self._window) / span, 3)

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
