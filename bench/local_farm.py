"""A throwaway farm for benchmarks: private Redis, a database, `sdfarm api` and `sdfarm worker` processes.

The processes are started by `sdfarm.farm_processes`, the same helper the tests use.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import redis
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.queue import queue_name
from models.settings import Settings
from models.worker_record import WorkerRecord
from sdfarm.farm_processes import ApiProcess, WorkerFleet
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid`, its live descendants, and every descendant already reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended between listing and reading: its parent counts it once reaped
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class BenchFarm:
    """Starts the parts on demand; `close()` stops everything it started."""

    def __init__(self, work_dir: Path, database_url: str | None = None, **settings):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.redis = RedisServer(work_dir / "redis").start()
        self.settings = Settings(data_dir=work_dir, database_url=database_url, redis_url=self.redis.url, **settings)
        upgrade(self.settings.resolved_database_url)
        self.sessions = make_session_factory(make_engine(self.settings.resolved_database_url))
        self.api: ApiProcess | None = None
        self.fleets: list[WorkerFleet] = []
        self.url = ""

    def start_api(self, processes: int = 2) -> str:
        """`sdfarm api` on a free port; returns its URL once it answers."""
        self.api = ApiProcess(self.settings, self.work_dir / "api.log", processes).start()
        self.url = self.api.url
        return self.url

    def start_workers(self, count: int, timeout: float = 300, gpus: str = "none", **extra_env: str) -> float:
        """`sdfarm worker --gpus none --cpu-workers count` (or `--gpus 0,1`); returns seconds until all were ready."""
        fleet = WorkerFleet(
            self.settings, self.work_dir / "worker.log", "--gpus", gpus, "--cpu-workers", str(count), **extra_env
        )
        self.fleets.append(fleet)
        fleet.start(expect_workers=count, timeout=timeout)
        return fleet.ready_seconds

    def worker_rows(self) -> list[dict]:
        """Every worker's row (state, configuration and start-up times) as plain values."""
        with self.sessions() as session:
            return [
                {column.name: getattr(row, column.name) for column in WorkerRecord.__table__.columns}
                for row in session.scalars(select(WorkerRecord))
            ]

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the farm's processes: the API, every worker (with its Celery
        processes) and Redis."""
        roots = [fleet.process for fleet in self.fleets] + [self.api.process if self.api else None]
        pids = [process.pid for process in roots + [self.redis.process] if process is not None]
        return sum(tree_cpu_seconds(pid) for pid in pids)

    def settle(self, model: str, timeout: float = 30) -> None:
        """Wait until no message for `model` is left in Redis, and the last one taken has run: a job's
        leftover messages run as tasks that find nothing to claim, and would weigh on what is timed next."""
        deadline = time.monotonic() + timeout
        with redis.Redis.from_url(self.redis.url) as queue:
            while queue.llen(queue_name(model)) and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.2)

    def stop_workers(self) -> None:
        """Warm-stop every `sdfarm worker` started so far."""
        for fleet in self.fleets:
            fleet.stop(timeout=120)

    def wait_for_job(self, job_id: int, timeout: float = 3600, interval: float = 0.25) -> dict:
        """Poll the API until the job ends."""
        return self.api.wait_for_job(job_id, timeout, interval)

    def close(self) -> None:
        """Stop workers and API (warm), then Redis."""
        self.stop_workers()
        if self.api is not None:
            self.api.stop(timeout=60)
        self.redis.stop()
