"""Farm processes started as children (`sdfarm api`, `sdfarm worker`), for tests and benchmarks.

One place for what both need: the settings as `SDFARM_*` variables, starting a process in its
own session with its output in a log file, waiting until it is ready, stopping it, and waiting
for a job to end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import requests
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.settings import Settings
from models.worker_record import WorkerRecord
from sdfarm.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
FINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "canceled"})
# Given on the command line of the processes that take them, so left out of the environment.
_COMMAND_LINE_SETTINGS = {"host", "port"}
# Set in this process by its own import of diffusers (torch's default, under /tmp), not by its user: a
# child started from a shell would not inherit it, so neither does one started from here.
_IMPORT_SIDE_EFFECTS = {"TORCHINDUCTOR_CACHE_DIR"}


def settings_env(settings: Settings) -> dict[str, str]:
    """The SDFARM_* environment that makes a child process see the same farm as `settings`."""
    env = {"HF_HUB_OFFLINE": "1"}
    for name, value in settings.model_dump().items():
        if value is None or name in _COMMAND_LINE_SETTINGS:
            continue
        env[f"SDFARM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["SDFARM_DATABASE_URL"] = settings.resolved_database_url
    return env


def spawn(args: list[str], settings: Settings, log_path: Path, **extra_env: str) -> subprocess.Popen:
    """`python -m sdfarm.cli ARGS` with the farm's environment, in its own session, logging to `log_path`."""
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "sdfarm.cli", *args],
            env={
                **{name: value for name, value in os.environ.items() if name not in _IMPORT_SIDE_EFFECTS},
                **settings_env(settings),
                **extra_env,
            },
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so stopping it reaches the Celery workers and pool children too.
            start_new_session=True,
        )


def stop(process: subprocess.Popen | None, timeout: float = 60.0) -> int:
    """SIGTERM the process group (a warm shutdown, as an operator would), SIGKILL it after `timeout`."""
    if process is None:
        return 0
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    return process.returncode


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `predicate` until it is true; the seconds it took, or TimeoutError naming `what`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def wait_for_job(
    fetch: Callable[[str], dict],
    job_id: int,
    timeout: float = 180.0,
    interval: float = 0.2,
    statuses: frozenset[str] | set[str] = FINAL_JOB_STATUSES,
) -> dict:
    """Poll the job through `fetch(path) -> JSON` until its status is in `statuses`; the job."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = fetch(f"/api/v1/jobs/{job_id}")
        if job["status"] in statuses:
            return job
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout}s: {job}")


class WorkerFleet:
    """`sdfarm worker ARGS` as a real process (its supervisor, Celery workers and pool children)."""

    def __init__(self, settings: Settings, log_path: Path, *args: str, **extra_env: str):
        self.settings = settings
        self.log_path = log_path
        self.args = args
        self.extra_env = extra_env
        self.process: subprocess.Popen | None = None

    def start(self, expect_workers: int = 1, timeout: float = 120.0) -> WorkerFleet:
        """Start and wait until `expect_workers` workers report idle with the model loaded."""
        self.started_at = time.time()
        self.process = spawn(["worker", *self.args], self.settings, self.log_path, **self.extra_env)
        self.ready_seconds = self.wait_ready(expect_workers, self.started_at, timeout)
        return self

    def ready_workers(self, since: float) -> int:
        """How many workers started after `since` (epoch seconds) say they are idle or busy."""
        sessions = make_session_factory(make_engine(self.settings.resolved_database_url))
        with sessions() as session:
            return sum(
                1
                for record in session.scalars(select(WorkerRecord))
                if record.state in {"idle", "busy"} and record.last_seen.timestamp() >= since
            )

    def wait_ready(self, expect_workers: int, since: float, timeout: float = 120.0) -> float:
        """Wait for heartbeats saying the models are loaded; the seconds it took."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; log: {self.log_path}")
            return self.ready_workers(since) >= expect_workers

        return wait_until(ready, timeout, f"{expect_workers} workers ready (log: {self.log_path})", 0.3)

    def celery_processes(self) -> dict[str, dict[str, psutil.Process]]:
        """For each live worker name (`cpu0@host`): its Celery main process and, once forked, its pool child."""
        found: dict[str, dict[str, psutil.Process]] = {}
        for main in psutil.Process(self.process.pid).children():
            try:
                command = main.cmdline()
                if "worker.celery_worker" not in command or main.status() == psutil.STATUS_ZOMBIE:
                    continue
                name = command[command.index("--name") + 1]
                children = [c for c in main.children() if c.status() != psutil.STATUS_ZOMBIE]
                found[name] = {"main": main, **({"child": children[0]} if children else {})}
            except (psutil.Error, ValueError, IndexError):
                continue  # gone while we looked, or not a worker
        return found

    def stop(self, timeout: float = 60.0) -> int:
        """Warm shutdown via SIGTERM, SIGKILL after `timeout`."""
        return stop(self.process, timeout)


class ApiProcess:
    """`sdfarm api` (gunicorn) on a free loopback port."""

    def __init__(self, settings: Settings, log_path: Path, processes: int = 1):
        self.settings = settings
        self.log_path = log_path
        self.processes = processes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ApiProcess:
        """Start and wait until /healthz answers."""
        args = ["api", "--port", str(self.port), "--processes", str(self.processes)]
        self.process = spawn(args, self.settings, self.log_path)

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"sdfarm api exited with {self.process.returncode}; log: {self.log_path}")
            try:
                return requests.get(self.url + "/healthz", timeout=5).ok
            except requests.RequestException:
                return False

        wait_until(answers, timeout, f"sdfarm api answering (log: {self.log_path})", 0.2)
        return self

    def get(self, path: str, attempts: int = 50) -> dict:
        """GET JSON, retrying while a dependency restarts (the caller is a patient client)."""
        for _ in range(attempts):
            try:
                response = requests.get(self.url + path, timeout=10)
                if response.status_code < 500:
                    return response.json()
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"GET {path} kept failing")

    def post(self, path: str, body: dict | None = None) -> dict:
        """POST JSON; the response's JSON (raises on an error status)."""
        response = requests.post(self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def wait_for_job(self, job_id: int, timeout: float = 3600.0, interval: float = 0.25) -> dict:
        """Poll until the job ends (without its images)."""
        return wait_for_job(lambda path: self.get(path + "?images=0"), job_id, timeout, interval)

    def stop(self, timeout: float = 30.0) -> int:
        """Stop gunicorn (warm)."""
        return stop(self.process, timeout)
