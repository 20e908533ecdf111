"""Checkpoints by A1111's names: a title is `name [hash]`; clients also send the name or the file name."""

from __future__ import annotations

from pathlib import Path

from api.auth import owner_id
from api.farm import db, farm
from models.catalog import ModelEntry, short_hash
from models.key_options import read_options


def title_of(entry: ModelEntry) -> str:
    """`name [hash]`, as A1111 titles a checkpoint (just the name while the weights are not there)."""
    return f"{entry.name} [{short_hash(entry.path)}]" if entry.path.exists() else entry.name


def find_checkpoint(name: str) -> ModelEntry | None:
    """The model a client named by title, model name, file name or path (case-insensitive), or None."""
    wanted = name.strip()
    if wanted.endswith("]") and " [" in wanted:
        wanted = wanted[: wanted.rindex(" [")]
    wanted = wanted.casefold()
    for entry in farm().catalog.entries().values():
        path = Path(entry.path)
        names = {entry.name, path.name, path.stem, str(path)}
        if wanted in {n.casefold() for n in names}:
            return entry
    return None


def current_checkpoint() -> ModelEntry:
    """The caller's default model (set through POST options), else the farm's."""
    options = read_options(db(), owner_id())
    if options is not None and options.sd_model:
        entry = farm().catalog.entries().get(options.sd_model)
        if entry is not None:
            return entry
    return farm().catalog.get(None)
