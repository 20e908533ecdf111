"""The README's first command: `sdfarm up` serves the farm with built-in defaults; Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from sdfarm.farm_processes import REPO
from sdfarm.redis_server import free_port


@pytest.fixture
def farm_up(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sdfarm.cli", "up", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, tmp_path)
    except BaseException:
        _kill_tree(process.pid)
        raise
    yield process, url, tmp_path
    _kill_tree(process.pid)
    log.close()


def _wait_healthy(process, url: str, tmp_path) -> None:
    deadline = time.monotonic() + 300  # generous: CI machines may be busy
    while True:
        assert process.poll() is None, (tmp_path / "up.log").read_text()
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "sdfarm up did not become healthy"
        time.sleep(0.5)


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for process in [*parent.children(recursive=True), parent]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def test_up_serves_a_curl_job_and_stops_cleanly(farm_up):
    process, url, tmp_path = farm_up
    children = psutil.Process(process.pid).children(recursive=True)
    assert any("redis-server" in " ".join(child.cmdline()) for child in children)
    response = requests.post(
        url + "/api/v1/jobs", json={"prompts": ["a red circle on a blue background"], "num_images": 2}
    )
    assert response.status_code == 202
    job_url = url + response.headers["Location"]
    deadline = time.monotonic() + 180
    while (job := requests.get(job_url, timeout=5).json())["status"] not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "succeeded"
    png = requests.get(url + job["images"][0]["url"], timeout=5)
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert (tmp_path / "data" / "sdfarm.db").is_file()
    assert list((tmp_path / "data" / "objects").rglob("*.png"))

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 0
    time.sleep(0.5)
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert "sdfarm stopped." in (tmp_path / "up.log").read_text()
