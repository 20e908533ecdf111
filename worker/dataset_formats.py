"""The three export formats, each written one image at a time into files on local disk.

A writer is given images one by one (`add`) and hands each finished file to `on_file(name, path,
images)`, which uploads it and deletes it, so the disk holds one archive or one shard at a time and
memory holds one image. Formats:

- `imagefolder`: a zip of PNGs with `metadata.jsonl` (`file_name`, `text` = the prompt, and every
  generation parameter as its own column), the layout Hugging Face `datasets` reads with its
  image-folder loader;
- `webdataset`: tar shards of `shard_size` images, each image as `<key>.png`, `<key>.txt` (the
  prompt) and `<key>.json` (every parameter);
- `zip`: the PNGs (which carry their infotext) with the infotext beside each as `<name>.txt`.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.image import Image

OnFile = Callable[[str, Path, int], None]
DEFAULT_SHARD_SIZE = 1000
# Fixed archive timestamps: the same selection makes the same bytes.
_EPOCH = (2020, 1, 1, 0, 0, 0)


def parameters(image: Image) -> dict[str, Any]:
    """Every generation parameter of an image, and where it came from, as JSON values."""
    return {
        "image_id": image.id,
        "job_id": image.job_id,
        "index": image.index,
        "prompt": image.prompt,
        "negative_prompt": image.negative_prompt,
        "seed": image.seed,
        "steps": image.steps,
        "guidance_scale": image.guidance_scale,
        "width": image.width,
        "height": image.height,
        "sampler": image.scheduler,
        "model": image.model,
        "model_hash": image.model_hash,
        "clip_skip": image.clip_skip,
        "strength": image.strength,
        # A JSON string, so the column has one type whether or not an image used adapters.
        "loras": json.dumps(image.loras or [], separators=(",", ":")),
        "nsfw": bool(image.nsfw),
        "sha256": image.sha256,
    }


def file_stem(image: Image) -> str:
    """The name of an image inside an export: its id, zero-padded so names sort in id order."""
    return f"{image.id:012d}"


class DatasetWriter(ABC):
    """Writes images into one format's files under `directory`; `close()` finishes the last one."""

    def __init__(self, directory: Path, on_file: OnFile):
        self.directory = Path(directory)
        self.on_file = on_file

    @abstractmethod
    def add(self, image: Image, png: bytes, infotext: str) -> None:
        """Add one image with its PNG bytes and infotext."""

    @abstractmethod
    def close(self) -> None:
        """Finish the open file and hand it over."""


class ImageFolderWriter(DatasetWriter):
    """`dataset.zip`: `metadata.jsonl` and the PNGs beside it, as `datasets`' image-folder loader reads them."""

    name = "dataset.zip"

    def __init__(self, directory: Path, on_file: OnFile):
        super().__init__(directory, on_file)
        self.path = self.directory / self.name
        # PNGs are compressed already: storing them saves CPU and loses nothing.
        self.archive = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.metadata = (self.directory / "metadata.jsonl").open("w", encoding="utf-8")
        self.count = 0

    def add(self, image: Image, png: bytes, infotext: str) -> None:
        file_name = f"{file_stem(image)}.png"
        self.archive.writestr(zipfile.ZipInfo(file_name, _EPOCH), png)
        row = {"file_name": file_name, "text": image.prompt, **parameters(image)}
        self.metadata.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self.metadata.close()
        info = zipfile.ZipInfo("metadata.jsonl", _EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        with (self.directory / "metadata.jsonl").open("rb") as source, self.archive.open(info, "w") as target:
            while chunk := source.read(1024 * 1024):
                target.write(chunk)
        self.archive.close()
        (self.directory / "metadata.jsonl").unlink()
        self.on_file(self.name, self.path, self.count)


class WebDatasetWriter(DatasetWriter):
    """`shard-000000.tar`, `shard-000001.tar`...: `shard_size` images each, three members per image."""

    def __init__(self, directory: Path, on_file: OnFile, shard_size: int = DEFAULT_SHARD_SIZE):
        super().__init__(directory, on_file)
        self.shard_size = shard_size
        self.shard = 0
        self.count = 0
        self.tar: tarfile.TarFile | None = None

    def add(self, image: Image, png: bytes, infotext: str) -> None:
        if self.tar is None:
            self.tar = tarfile.open(self._path(), "w", format=tarfile.PAX_FORMAT)
        key = file_stem(image)
        record = parameters(image)
        record["infotext"] = infotext
        # WebDataset groups a sample's files by the name before the first dot, in tar order.
        for suffix, data in (
            ("png", png),
            ("txt", image.prompt.encode()),
            ("json", json.dumps(record, ensure_ascii=False).encode()),
        ):
            member = tarfile.TarInfo(f"{key}.{suffix}")
            member.size = len(data)
            member.mtime = 1577836800
            member.mode = 0o644
            self.tar.addfile(member, io.BytesIO(data))
        self.count += 1
        if self.count == self.shard_size:
            self._finish_shard()

    def close(self) -> None:
        if self.tar is not None:
            self._finish_shard()

    def _path(self) -> Path:
        return self.directory / f"shard-{self.shard:06d}.tar"

    def _finish_shard(self) -> None:
        self.tar.close()
        self.tar = None
        path = self._path()
        self.on_file(path.name, path, self.count)
        self.shard += 1
        self.count = 0


class ZipWriter(DatasetWriter):
    """`images.zip`: each PNG (its infotext embedded) and the same infotext beside it as a .txt file."""

    name = "images.zip"

    def __init__(self, directory: Path, on_file: OnFile):
        super().__init__(directory, on_file)
        self.path = self.directory / self.name
        self.archive = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.count = 0

    def add(self, image: Image, png: bytes, infotext: str) -> None:
        stem = file_stem(image)
        self.archive.writestr(zipfile.ZipInfo(f"{stem}.png", _EPOCH), png)
        text = zipfile.ZipInfo(f"{stem}.txt", _EPOCH)
        text.compress_type = zipfile.ZIP_DEFLATED
        self.archive.writestr(text, infotext)
        self.count += 1

    def close(self) -> None:
        self.archive.close()
        self.on_file(self.name, self.path, self.count)


def make_writer(format: str, directory: Path, on_file: OnFile, shard_size: int | None) -> DatasetWriter:
    """The writer of a format name (see models.export.FORMATS)."""
    if format == "imagefolder":
        return ImageFolderWriter(directory, on_file)
    if format == "webdataset":
        return WebDatasetWriter(directory, on_file, shard_size or DEFAULT_SHARD_SIZE)
    if format == "zip":
        return ZipWriter(directory, on_file)
    raise ValueError(f"unknown export format {format!r}")
