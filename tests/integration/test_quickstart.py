"""The README's quick start, run as written: `sdfarm up` serves the farm with built-in defaults and says it is
up only once a worker can take work; the README's curl job, its infotext example and its `sdfarm submit` /
`sdfarm status` commands (which find the farm by themselves) come out as the README says; Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from io import BytesIO

import psutil
import pytest
import requests
from PIL import Image

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
    """Wait for the banner; the moment it is printed, the API and a worker must be ready."""
    deadline = time.monotonic() + 300  # generous: CI machines may be busy
    while "sdfarm is up" not in (tmp_path / "up.log").read_text():
        assert process.poll() is None, (tmp_path / "up.log").read_text()
        assert time.monotonic() < deadline, "sdfarm up did not come up"
        time.sleep(0.2)
    assert requests.get(url + "/healthz", timeout=5).status_code == 200
    workers = requests.get(url + "/api/v1/workers", timeout=5).json()["workers"]
    assert [(w["online"], w["state"]) for w in workers] == [(True, "idle")], workers


README = (REPO / "README.md").read_text()


def readme_quick_start() -> tuple[dict, str, list[str]]:
    """From the README: the first curl job's body, the infotext example, and the `sdfarm` command lines."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    body = json.loads(re.search(r"-d '(\{.*?\})'", section, re.S).group(1))
    infotext = re.search(r"```\n(a red circle.*?)\n```", README, re.S).group(1)
    commands = re.findall(r"^\.venv/bin/(sdfarm .*)$", section, re.M)
    return body, infotext, commands


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
    log = (tmp_path / "up.log").read_text()
    assert "sdfarm stopped." in log
    assert "superuser" not in log and "SecurityWarning" not in log  # nothing a user could not act on
    assert not (tmp_path / "data" / "farm-url").exists()


def test_the_readme_quick_start_is_true(farm_up):
    process, url, tmp_path = farm_up
    body, infotext, commands = readme_quick_start()
    assert (tmp_path / "data" / "farm-url").read_text().strip() == url
    assert f"--url {url} or set SDFARM_URL={url}" in (tmp_path / "up.log").read_text()

    response = requests.post(url + "/api/v1/jobs", json=body, timeout=10)  # the README's curl
    job = response.json()
    assert (response.status_code, job["id"], job["status"], job["total"]) == (202, 1, "queued", 8)
    assert response.headers["Location"] == "/api/v1/jobs/1"
    deadline = time.monotonic() + 240
    while (job := requests.get(url + "/api/v1/jobs/1", timeout=5).json())["status"] not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    first = job["images"][0]
    assert (job["status"], first["index"], first["seed"], first["url"]) == ("succeeded", 0, 42, "/api/v1/images/1/file")
    png = Image.open(BytesIO(requests.get(url + first["url"], timeout=5).content))
    assert png.info["parameters"] == infotext  # the README's infotext example is image 1 of this job

    # `sdfarm submit` / `sdfarm status` as the README writes them, run where `sdfarm up` ran (./data),
    # with no --url or SDFARM_URL: they find the farm on its non-default port.
    (tmp_path / "prompts.txt").write_text("# comments and blank lines are skipped\n\na red circle\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    assert commands == ["sdfarm submit prompts.txt --num-images 4 --wait", "sdfarm status 1"]
    outputs = []
    for command in commands:
        argv = command.split()[1:]
        argv[-1] = "2" if argv[0] == "status" else argv[-1]  # the README's job 1 is the curl job here
        done = subprocess.run(
            [sys.executable, "-m", "sdfarm.cli", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done)
    assert f"farm: {url} (the farm `sdfarm up` started" in outputs[0].stderr
    assert "job 2: 4 images queued" in outputs[0].stdout
    assert "job 2: succeeded, 4/4 succeeded" in outputs[1].stdout
