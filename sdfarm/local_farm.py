"""`sdfarm up`: the whole farm on one machine (private Redis, SQLite, the API and one worker)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import requests
from sqlalchemy import func, select

from models.base import utcnow
from models.db import make_engine
from models.settings import Settings
from models.worker_record import WorkerRecord
from sdfarm.client import URL_FILE
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
    url_file = data_dir / URL_FILE

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
        print("Starting the API and a worker (the worker loads its model first)...", flush=True)
        if not wait_until_ready(url, settings, children, stop):
            if stop.is_set():
                return 0
            log.error("a farm process exited while starting; stopping the farm")
            return 1
        url_file.write_text(url + "\n")
        print(
            f"\nsdfarm is up: gallery {url}/  API {url}/api/v1/\n"
            f"Data in {data_dir}; private Redis on port {redis_server.port}.\n"
            f"Try:  curl -s -X POST {url}/api/v1/jobs -H 'Content-Type: application/json' "
            '-d \'{"prompts": ["a red circle on a blue background"], "num_images": 4}\'\n'
            f"`sdfarm submit` and `sdfarm status` run here find this farm ({url_file}); from elsewhere pass\n"
            f"--url {url} or set SDFARM_URL={url}.\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stop.wait(1.0):
            if any(child.poll() is not None for child in children):
                log.error("a farm process exited unexpectedly; stopping the farm")
                return 1
        return 0
    finally:
        url_file.unlink(missing_ok=True)
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


def wait_until_ready(
    url: str, settings: Settings, children: list[subprocess.Popen], stop: threading.Event, timeout: float = 900.0
) -> bool:
    """Wait until the API answers /healthz and a worker has loaded its model (its heartbeat says idle or busy).

    False if a child exits, Ctrl-C is pressed, or `timeout` passes first.
    """
    engine = make_engine(settings.resolved_database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not stop.is_set():
            if any(child.poll() is not None for child in children):
                return False
            if _api_answers(url) and _worker_ready(engine, settings.worker_offline_seconds):
                return True
            stop.wait(0.5)
        return False
    finally:
        engine.dispose()


def _api_answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _worker_ready(engine, offline_seconds: float) -> bool:
    since = utcnow() - timedelta(seconds=offline_seconds)
    query = select(func.count()).where(WorkerRecord.state.in_(("idle", "busy")), WorkerRecord.last_seen >= since)
    with engine.connect() as connection:
        return bool(connection.scalar(query))
