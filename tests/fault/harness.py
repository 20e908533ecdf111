"""A whole farm in real processes for fault tests: private PostgreSQL and Redis, `sdfarm api`, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from models.settings import Settings
from sdfarm.redis_server import RedisServer, free_port
from tests.farm_harness import REPO, WorkerFleet, settings_env


class ApiProcess:
    """`sdfarm api` (gunicorn) on a free port."""

    def __init__(self, settings: Settings, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **settings_env(settings)}
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdfarm.cli", "api", "--port", str(self.port), "--processes", "1"],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/api/v1/jobs", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"sdfarm api did not start; see {log_path}") from None
                time.sleep(0.2)

    def get(self, path: str) -> dict:
        """GET JSON, retrying while a dependency restarts (the caller is a patient client)."""
        for _ in range(50):
            try:
                response = requests.get(self.url + path, timeout=10)
                if response.status_code < 500:
                    return response.json()
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"GET {path} kept failing")

    def stop(self) -> None:
        """Stop gunicorn."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def restart_redis(server: RedisServer) -> RedisServer:
    """Kill Redis outright and start an empty one on the same port: every queued message is gone."""
    server.kill()
    return RedisServer(server.directory, port=server.port).start()


def celery_processes(fleet: WorkerFleet) -> dict[str, dict[str, psutil.Process]]:
    """For each worker name: its Celery main process and its pool child."""
    found: dict[str, dict[str, psutil.Process]] = {}
    for main in psutil.Process(fleet.process.pid).children():
        try:
            command = main.cmdline()
            if "worker.celery_worker" not in command or main.status() == psutil.STATUS_ZOMBIE:
                continue
            name = command[command.index("--name") + 1]
            children = [c for c in main.children() if c.status() != psutil.STATUS_ZOMBIE]
            found[name] = {"main": main, **({"child": children[0]} if children else {})}
        except (psutil.Error, ValueError, IndexError):
            continue
    return found
