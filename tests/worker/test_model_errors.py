"""A missing or broken model stops `sdfarm worker` at start with a message saying what is wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sdfarm.farm_processes import REPO


def _worker(tmp_path, model: str, models_dir=None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SDFARM_DATA_DIR": str(tmp_path),
        "SDFARM_MODEL": model,
        "SDFARM_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    if models_dir:
        env["SDFARM_MODELS_DIR"] = str(models_dir)
    return subprocess.run(
        [sys.executable, "-m", "sdfarm.cli", "worker", "--gpus", "none"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_model_path(tmp_path):
    result = _worker(tmp_path, "nonexistent-model")
    assert result.returncode != 0
    assert "unknown model 'nonexistent-model'" in result.stderr


def test_unknown_gpu_selection(tmp_path, models_dir):
    env = {**os.environ, "SDFARM_DATA_DIR": str(tmp_path), "SDFARM_MODELS_DIR": str(models_dir), "SDFARM_MODEL": "tiny"}
    result = subprocess.run(
        [sys.executable, "-m", "sdfarm.cli", "worker", "--gpus", "all"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "no NVIDIA GPU is visible" in result.stderr


def test_broken_weights_are_reported_with_the_file(tmp_path, models_dir):
    broken = tmp_path / "models" / "broken"
    shutil.copytree(models_dir / "tiny", broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated download
    result = _worker(tmp_path, "broken", tmp_path / "models")
    assert result.returncode != 0
    assert "not a readable safetensors file" in result.stderr and str(weights) in result.stderr


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    folder = tmp_path / "models" / "notamodel"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    result = _worker(tmp_path, "notamodel", tmp_path / "models")
    assert result.returncode != 0 and "lists no unet" in result.stderr


def test_weights_cut_short_after_an_intact_header_are_caught_before_any_worker_starts(tmp_path, models_dir):
    from models.catalog import ModelCatalog
    from worker.preflight import check_model
    from worker.runner import ModelLoadError

    broken = tmp_path / "models" / "cut"
    shutil.copytree(models_dir / "tiny", broken)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match="truncated or damaged") as caught:
        check_model(ModelCatalog(tmp_path / "models").get("cut"))
    assert str(weights) in str(caught.value)
    check_model(ModelCatalog(tmp_path / "models", str(models_dir / "tiny")).get(None))  # the intact copy passes


def test_the_supervisors_model_check_does_not_import_torch(models_dir):
    """`sdfarm worker` checks the model before starting workers; torch there would lengthen every cold start."""
    script = (
        "import sys; from pathlib import Path; from models.catalog import ModelCatalog; "
        "from worker.preflight import check_model; "
        f"check_model(ModelCatalog(Path({str(models_dir)!r})).get('tiny')); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
