"""A throwaway farm for benchmarks: private Redis, a database, `sdfarm api` and `sdfarm worker` processes.

The processes are started by `sdfarm.farm_processes`, the same helper the tests use.
"""

from __future__ import annotations

from pathlib import Path

from models.db import make_engine, make_session_factory
from models.settings import Settings
from sdfarm.farm_processes import ApiProcess, WorkerFleet
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer


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

    def start_workers(self, count: int, timeout: float = 300, **extra_env: str) -> float:
        """`sdfarm worker --gpus none --cpu-workers count`; returns seconds until all were ready."""
        fleet = WorkerFleet(
            self.settings, self.work_dir / "worker.log", "--gpus", "none", "--cpu-workers", str(count), **extra_env
        )
        self.fleets.append(fleet)
        fleet.start(expect_workers=count, timeout=timeout)
        return fleet.ready_seconds

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
