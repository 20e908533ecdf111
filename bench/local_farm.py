"""A throwaway farm for benchmarks: private Redis, a database, `sdfarm api` and `sdfarm worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.settings import Settings
from models.worker_record import WorkerRecord
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent


class BenchFarm:
    """Starts the parts on demand; `close()` stops everything it started."""

    def __init__(self, work_dir: Path, database_url: str | None = None, **settings):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.redis = RedisServer(work_dir / "redis").start()
        self.settings = Settings(data_dir=work_dir, database_url=database_url, redis_url=self.redis.url, **settings)
        upgrade(self.settings.resolved_database_url)
        self.sessions = make_session_factory(make_engine(self.settings.resolved_database_url))
        self.processes: list[subprocess.Popen] = []
        self.url = ""

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for child processes (settings as SDFARM_* variables)."""
        values = {
            f"SDFARM_{name.upper()}": str(value)
            for name, value in self.settings.model_dump().items()
            if value is not None and name not in {"host", "port"}
        }
        values["SDFARM_DATABASE_URL"] = self.settings.resolved_database_url
        return {**os.environ, **values, "HF_HUB_OFFLINE": "1", **extra}

    def _spawn(self, args: list[str], log: str, **extra: str) -> subprocess.Popen:
        handle = (self.work_dir / log).open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "sdfarm.cli", *args],
            env=self.env(**extra),
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_api(self, processes: int = 2) -> str:
        """`sdfarm api` on a free port; returns its URL once it answers."""
        port = free_port()
        self._spawn(["api", "--port", str(port), "--processes", str(processes)], "api.log")
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=10).ok:
                    return self.url
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("API did not start; see api.log")

    def start_workers(self, count: int, timeout: float = 300, gpus: str = "none", **extra: str) -> float:
        """`sdfarm worker --gpus none --cpu-workers count` (or `--gpus 0,1`); returns seconds until all were ready."""
        started = time.time()
        self._spawn(["worker", "--gpus", gpus, "--cpu-workers", str(count)], "worker.log", **extra)
        while time.time() - started < timeout:
            with self.sessions() as session:
                ready = [
                    r
                    for r in session.scalars(select(WorkerRecord))
                    if r.state == "idle" and r.started_at.timestamp() >= started - 1
                ]
            if len(ready) >= count:
                return time.time() - started
            time.sleep(0.2)
        raise RuntimeError(f"{count} workers not ready in {timeout}s; see worker.log")

    def worker_rows(self) -> list[dict]:
        """Every worker's row (state, configuration and start-up times) as plain values."""
        with self.sessions() as session:
            return [
                {column.name: getattr(row, column.name) for column in WorkerRecord.__table__.columns}
                for row in session.scalars(select(WorkerRecord))
            ]

    def stop_workers(self) -> None:
        """Warm-stop every `sdfarm worker` started so far."""
        for process in self.processes:
            if "worker" in process.args and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=120)

    def wait_for_job(self, job_id: int, timeout: float = 3600, interval: float = 0.25) -> dict:
        """Poll the API until the job ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = requests.get(f"{self.url}/api/v1/jobs/{job_id}?images=0", timeout=30).json()
            if job["status"] in {"succeeded", "failed", "canceled"}:
                return job
            time.sleep(interval)
        raise TimeoutError(f"job {job_id} did not finish")

    def close(self) -> None:
        """Stop workers and API (warm), then Redis."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.redis.stop()
