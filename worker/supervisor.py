"""`sdfarm worker`: one Celery worker process per GPU (or N on the CPU), kept alive.

Each worker runs with CUDA_VISIBLE_DEVICES set to its GPU, so inside it the GPU is
always `cuda:0`. The supervisor restarts a worker that dies, forwards SIGTERM/SIGINT
as a warm shutdown, and runs the background tasks: the reaper, webhook deliveries and dataset
exports, each in its own loop (worker/background.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from models.db import make_engine, make_session_factory
from models.image_store import open_image_store
from models.queue import RenderQueue, make_celery
from models.settings import Settings
from worker.background import BackgroundLoop
from worker.exporter import ExportRunner
from worker.reaper import Reaper
from worker.webhooks import WebhookDispatcher

log = logging.getLogger("sdfarm.supervisor")

RESTART_WINDOW = 60.0
WEBHOOK_POLL_SECONDS = 1.0
EXPORT_POLL_SECONDS = 1.0
MAX_QUICK_RESTARTS = 5


@dataclass
class WorkerProcess:
    """A worker the supervisor keeps running."""

    name: str
    model: str
    env: dict[str, str]
    max_batch: int
    process: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)

    def command(self) -> list[str]:
        """The command line of this worker."""
        return [
            sys.executable,
            "-m",
            "worker.celery_worker",
            "--name",
            self.name,
            "--model",
            self.model,
            "--max-batch",
            str(self.max_batch),
        ]


def plan_workers(
    model: str, gpus: list[int] | None, cpu_workers: int, max_batch: int, settings: Settings, tag_model: bool = False
) -> list[WorkerProcess]:
    """One worker per GPU, or `cpu_workers` CPU workers sharing the cores.

    Names say device and host (`gpu0@host`); with `tag_model` they also say the model
    (`gpu0-sdxl@host`), so workers of several models on one machine stay distinct.
    """
    host = settings.resolved_host_name
    suffix = f"-{model}" if tag_model else ""
    base_env = dict(os.environ)
    if gpus is None:
        threads = settings.cpu_threads or max(1, (os.cpu_count() or 1) // cpu_workers)
        env = {**base_env, "CUDA_VISIBLE_DEVICES": "", "SDFARM_DEVICE": "cpu", "SDFARM_CPU_THREADS": str(threads)}
        return [WorkerProcess(f"cpu{i}{suffix}@{host}", model, env, max_batch) for i in range(cpu_workers)]
    return [
        WorkerProcess(f"gpu{index}{suffix}@{host}", model, {**base_env, "CUDA_VISIBLE_DEVICES": str(index)}, max_batch)
        for index in gpus
    ]


class Supervisor:
    """Starts the planned workers, restarts the ones that die, stops them all on a signal."""

    def __init__(self, settings: Settings, workers: list[WorkerProcess], run_reaper: bool = True):
        self.settings = settings
        self.workers = workers
        self.run_reaper = run_reaper
        self._stopping = threading.Event()

    def _start(self, worker: WorkerProcess) -> None:
        worker.starts = [t for t in worker.starts if time.monotonic() - t < RESTART_WINDOW] + [time.monotonic()]
        worker.process = subprocess.Popen(worker.command(), env=worker.env)
        log.info("started worker %s (pid %d) for model %s", worker.name, worker.process.pid, worker.model)

    def stop(self, *_signal_args) -> None:
        """Warm shutdown: SIGTERM to every worker (Celery finishes or requeues the running batch)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping %d workers", len(self.workers))
        for worker in self.workers:
            if worker.process and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Run until stopped; returns the exit status."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        loops = self._start_background() if self.run_reaper else []
        for worker in self.workers:
            self._start(worker)
        status = 0
        while not self._stopping.is_set():
            for worker in self.workers:
                code = worker.process.poll() if worker.process else None
                if code is None or self._stopping.is_set():
                    continue
                if len(worker.starts) >= MAX_QUICK_RESTARTS:
                    log.error(
                        "worker %s exited %d times within %ds (last code %s); not restarting it. "
                        "Check its log above (is the model loadable?)",
                        worker.name,
                        len(worker.starts),
                        RESTART_WINDOW,
                        code,
                    )
                    status = 1
                    self.stop()
                    break
                log.warning("worker %s exited with code %s; restarting it", worker.name, code)
                self._start(worker)
            self._stopping.wait(0.5)
        grace = self.settings.batch_hard_time_limit + 30
        for worker in self.workers:
            if worker.process:
                try:
                    worker.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
        for loop in loops:
            loop.stop()
        return status

    def _start_background(self) -> list[BackgroundLoop]:
        """The reaper, webhook deliveries (never inside an API request) and dataset exports, one loop each."""
        settings = self.settings
        sessions = make_session_factory(make_engine(settings.resolved_database_url))
        queue = RenderQueue(make_celery(settings), settings.redis_url)
        store = open_image_store(settings)
        reaper = Reaper(sessions, queue, store, settings.max_attempts, settings.max_batch)
        runner_name = f"exports@{settings.resolved_host_name}:{os.getpid()}"
        loops = [
            BackgroundLoop(reaper, max(1.0, settings.lease_seconds / 3), "reaper"),
            BackgroundLoop(WebhookDispatcher(sessions, settings), WEBHOOK_POLL_SECONDS, "webhooks"),
            BackgroundLoop(
                ExportRunner(sessions, store, runner_name, settings.lease_seconds), EXPORT_POLL_SECONDS, "exports"
            ),
        ]
        for loop in loops:
            loop.start()
        return loops
