"""Checks a model on disk before any worker starts, so a bad path fails at once with a clear message.

Reads only JSON configs and safetensors headers (no weights), so it takes milliseconds even
for a 7 GB checkpoint; the full load happens in the worker process.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    """The header parses, names tensors, and the file holds every byte it promises (not truncated).

    Read here rather than with safetensors' safe_open(framework="pt"), which imports torch: the
    supervisor checks the model before starting its workers, and seconds spent importing torch
    there would add to every worker's cold start.
    """
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= min(size - 8, 100 * 1024 * 1024):
                raise ValueError("its header length is impossible")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        header.pop("__metadata__", None)
        ends = [entry["data_offsets"][1] for entry in header.values()]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ModelLoadError(f"model {name!r}: {file} is not a readable safetensors file ({error})") from None
    if not ends:
        raise ModelLoadError(f"model {name!r}: {file} holds no tensors")
    if 8 + length + max(ends) != size:
        raise ModelLoadError(
            f"model {name!r}: {file} is not a readable safetensors file (its header promises "
            f"{8 + length + max(ends)} bytes, the file has {size}: truncated or damaged?)"
        )
