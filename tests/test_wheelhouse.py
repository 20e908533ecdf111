"""`make wheelhouse` makes an installable set: installed with --no-index into an empty target, beside an
interpreter that brings what a GPU machine brings (torch and the skipped libraries), sdfarm imports from
the checkout that travels with the folder, its dependencies from the folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.network


def test_the_wheelhouse_installs_offline_and_sdfarm_imports(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # this interpreter's, so the wheels import here
    script = ROOT / "scripts" / "wheelhouse.py"
    build = subprocess.run(
        [sys.executable, str(script), "--out", str(wheelhouse), "--python-version", version],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "pip download failed" in build.stderr:
        pytest.skip(f"no package index reachable: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(wheelhouse.glob("*.whl"))
    names = {wheel.name.split("-")[0].lower() for wheel in wheels}
    assert {"diffusers", "celery", "flask", "sqlalchemy", "psycopg_binary", "pydantic_core", "boto3"} <= names
    assert not names & {"torch", "numpy", "pillow", "transformers", "triton"}  # the GPU machine brings these
    assert sum(wheel.stat().st_size for wheel in wheels) <= 60e6

    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target)]
    subprocess.run([*install, *map(str, wheels)], check=True, capture_output=True, timeout=300)
    # The installed copies come first, as in gpu-check's venv; torch and the skipped ones come from this
    # interpreter, as from the GPU machine's own site-packages.
    script = (
        "import sdfarm.cli, api, worker.celery_worker, worker.diffusers_runner, celery, diffusers; "
        "print(sdfarm.__file__); print(celery.__file__); print(diffusers.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{target}:{ROOT}", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sdfarm_file, celery_file, diffusers_file = result.stdout.split()
    assert sdfarm_file.startswith(str(ROOT)) and celery_file.startswith(str(target))
    assert diffusers_file.startswith(str(target)), result.stdout
