"""Where image files live: an interface, and a local (or network-mounted) directory behind it.

Keys are made by the server (see `object_key_for`), never taken from a request, and
every key is checked to resolve under the store's root before it touches the disk.
An S3-compatible store can implement the same four methods; big objects (export archives)
go through `put_fileobj` and `open`, which such a store should override to stream (multipart).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")


class InvalidKeyError(ValueError):
    """A key that is not one the server could have made (traversal, odd characters)."""


class ImageStore(ABC):
    """Stores and returns objects by key; writes are atomic (all or nothing)."""

    @abstractmethod
    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        """Store data under key, never half-written; `durable` also waits until it is on disk."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes stored under key; FileNotFoundError when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key if present."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every stored key (for audits and clean-up of orphans)."""

    def local_path(self, key: str) -> Path | None:
        """A file path the web server can stream from, when the store is on a file system."""
        return None

    def put_fileobj(self, key: str, source: BinaryIO) -> None:
        """Store everything `source` holds under key, atomically. Stores override this to stream;
        this fallback reads it into memory, which only suits small objects."""
        self.put(key, source.read())

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; FileNotFoundError when absent. Stores override
        this to stream; this fallback reads the whole object first."""
        return io.BytesIO(self.read(key))


def check_key(key: str) -> str:
    """Return key if it is a well-formed object key, else raise InvalidKeyError."""
    if not isinstance(key, str) or len(key) > 500 or not _KEY.match(key) or ".." in key:
        raise InvalidKeyError(f"invalid object key {key!r}")
    return key


class LocalImageStore(ImageStore):
    """Objects as files under a root directory (local disk or a shared network mount)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"object key {key!r} leaves the store")
        return path

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers and crashes never see a partial file.
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def put_fileobj(self, key: str, source: BinaryIO) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temp.open("wb") as handle:
                shutil.copyfileobj(source, handle, 1024 * 1024)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def object_key_for(job_id: int, index: int, attempt_token: str, suffix: str) -> str:
    """The server-chosen key of an image file: unique per attempt, grouped by job."""
    return f"jobs/{job_id:08d}/{index:06d}-{attempt_token[:8]}{suffix}"


def export_key_for(export_id: int, attempt_token: str, file_name: str) -> str:
    """The server-chosen key of an export's file: unique per attempt, grouped by export."""
    return f"exports/{export_id:08d}/{attempt_token[:8]}-{file_name}"
