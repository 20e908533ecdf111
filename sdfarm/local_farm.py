"""`sdfarm up`: the whole farm on one machine (private Redis, SQLite, the API and one worker)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from models.settings import Settings
from sdfarm.migrate import upgrade
from sdfarm.redis_server import RedisServer

log = logging.getLogger("sdfarm.up")


def run_local_farm(settings: Settings, gpus: str, cpu_workers: int) -> int:
    """Start everything, print where to look, and stop everything cleanly on Ctrl-C."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(data_dir / "redis", append_only=True).start()
    env = {
        **os.environ,
        "SDFARM_DATA_DIR": str(data_dir),
        "SDFARM_REDIS_URL": redis_server.url,
        "SDFARM_HOST": settings.host,
        "SDFARM_PORT": str(settings.port),
        "HF_HUB_OFFLINE": "1",
    }
    children: list[subprocess.Popen] = []
    stop = threading.Event()

    def request_stop(*_args) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        upgrade(settings.resolved_database_url)
        cli = [sys.executable, "-m", "sdfarm.cli"]
        children.append(subprocess.Popen([*cli, "worker", "--gpus", gpus, "--cpu-workers", str(cpu_workers)], env=env))
        children.append(subprocess.Popen([*cli, "api"], env=env))
        url = f"http://{settings.host}:{settings.port}"
        print(
            f"\nsdfarm is up: gallery {url}/  API {url}/api/v1/\n"
            f"Data in {data_dir}; private Redis on port {redis_server.port}.\n"
            f"Try:  curl -s -X POST {url}/api/v1/jobs -H 'Content-Type: application/json' "
            '-d \'{"prompts": ["a red circle on a blue background"], "num_images": 4}\'\n'
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stop.wait(1.0):
            if any(child.poll() is not None for child in children):
                log.error("a farm process exited unexpectedly; stopping the farm")
                return 1
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        redis_server.stop()
        print("sdfarm stopped.", flush=True)
