"""Checks a model on disk before any worker starts, so a bad path fails at once with a clear message.

Reads only JSON configs and safetensors headers (no weights), so it takes milliseconds even
for a 7 GB checkpoint; the full load happens in the worker process.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from models.catalog import ModelEntry
from worker.runner import ModelLoadError

REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def check_model(entry: ModelEntry) -> None:
    """Raise ModelLoadError saying what is wrong with the model's files, if anything."""
    if entry.builtin and entry.name == "tiny":
        return  # built on first use
    path = entry.path
    if not path.exists():
        raise ModelLoadError(
            f"model {entry.name!r}: {path} does not exist. Set SDFARM_MODEL to a diffusers folder or a "
            f".safetensors file, or put one in SDFARM_MODELS_DIR."
        )
    if entry.kind == "single_file":
        from worker.single_file import check_single_file

        _check_safetensors(path, entry.name)
        check_single_file(entry)
        return
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"model {entry.name!r}: {path} has no model_index.json; it is not a diffusers folder")
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"model {entry.name!r}: {index_file} is not valid JSON ({error})") from None
    for component in REQUIRED_COMPONENTS:
        if component not in index:
            raise ModelLoadError(f"model {entry.name!r}: model_index.json lists no {component}")
        folder = path / component
        if not folder.is_dir():
            raise ModelLoadError(f"model {entry.name!r}: component folder {folder} is missing")
        for weights in folder.glob("*.safetensors"):
            _check_safetensors(weights, entry.name)
        if component in {"unet", "vae", "text_encoder"} and not list(folder.glob("*.safetensors")):
            raise ModelLoadError(
                f"model {entry.name!r}: {folder} has no .safetensors weights (sdfarm loads safetensors only; "
                "convert .bin weights with diffusers' save_pretrained(safe_serialization=True))"
            )


def _check_safetensors(file: Path, name: str) -> None:
    try:
        with safe_open(str(file), framework="pt") as handle:
            if not list(handle.keys()):
                raise ModelLoadError(f"model {name!r}: {file} holds no tensors")
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"model {name!r}: {file} is not a readable safetensors file ({error})") from None
