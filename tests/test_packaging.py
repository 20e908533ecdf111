"""The built wheel holds everything a farm needs outside the source tree: pages, weights, vocabulary, migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = [
    "api/templates/gallery.html",
    "api/static/gallery.js",
    "worker/clip/bpe_simple_vocab_16e6.txt.gz",
    "worker/demo_model/weights/shapes-64/model_index.json",
    "worker/demo_model/weights/shapes-64/unet/diffusion_pytorch_model.safetensors",
    "worker/demo_model/weights/shapes-64/tokenizer/vocab.json",
    "migrations/env.py",
    "migrations/script.py.mako",
]


def test_wheel_holds_the_data_and_works_installed(tmp_path):
    # Built from a copy: setuptools leaves a build/ folder whose stale files a later wheel would pick up.
    source = tmp_path / "source"
    skipped = shutil.ignore_patterns(".git", ".venv", "data", "build", "*.egg-info", "__pycache__", "bench-results")
    shutil.copytree(ROOT, source, ignore=skipped)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    build = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("sdfarm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [name for name in DATA_FILES if name not in names] == []
    assert any(name.startswith("migrations/versions/0001_") for name in names)

    # Installed on its own (the checkout out of the path): migrations run and the demo model is found.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = f"""
from pathlib import Path
from models.catalog import ModelCatalog
from sdfarm.migrate import MIGRATIONS_DIR, upgrade
assert str(MIGRATIONS_DIR).startswith({str(target)!r}), MIGRATIONS_DIR
upgrade("sqlite:///{tmp_path}/farm.db")
entry = ModelCatalog(Path("/nonexistent")).get("shapes")
assert str(entry.path).startswith({str(target)!r}) and entry.builtin, entry.path
print("ok")
"""
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=environment
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
