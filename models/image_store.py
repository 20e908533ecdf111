"""Where image files live: an interface, and a local (or network-mounted) directory behind it.

Keys are made by the server (see `object_key_for`), never taken from a request, and
every key is checked to resolve under the store's root before it touches the disk.
`open_image_store` picks the store from the settings: a directory, or any S3-compatible
service (`models/s3_store.py`) for farms that span machines. Big objects (export archives)
go through `put_fileobj` and `open`, which stream.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from models.settings import Settings

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")


class InvalidKeyError(ValueError):
    """A key that is not one the server could have made (traversal, odd characters)."""


class StoreUnavailableError(RuntimeError):
    """The store cannot be used as configured (missing bucket, refused credentials, unreachable)."""


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
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with prefix (for audits and clean-up of an attempt's files)."""

    @abstractmethod
    def open(self, key: str) -> tuple[IO[bytes], int]:
        """A readable stream of the object and its size, for serving it; FileNotFoundError when absent."""

    @abstractmethod
    def check(self) -> None:
        """Prove the store is reachable and writable, or raise StoreUnavailableError saying what to fix."""

    @abstractmethod
    def describe(self) -> str:
        """Where the objects are, for logs (never a secret)."""

    def local_path(self, key: str) -> Path | None:
        """A file path the web server can stream from, when the store is on a file system."""
        return None

    def presigned_url(self, key: str, expires_seconds: int, mimetype: str, download_name: str | None) -> str | None:
        """A short-lived URL a browser can fetch the object from directly, where the store has one."""
        return None

    def redirect_origin(self) -> str | None:
        """The origin (scheme://host[:port]) presigned URLs point at, for the gallery's CSP."""
        return None

    def put_fileobj(self, key: str, source: BinaryIO) -> None:
        """Store everything `source` holds under key, atomically. Stores override this to stream;
        this fallback reads it into memory, which only suits small objects."""
        self.put(key, source.read())


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

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        # Only the folder the prefix names is walked, so listing one attempt's files stays cheap.
        folder = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not folder.resolve().is_relative_to(self.root) or not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def open(self, key: str) -> tuple[IO[bytes], int]:
        path = self._path(key)
        handle = path.open("rb")
        return handle, os.fstat(handle.fileno()).st_size

    def check(self) -> None:
        probe = f"probes/{uuid.uuid4().hex}"
        try:
            self.put(probe, b"sdfarm", durable=False)
            self.delete(probe)
        except OSError as error:
            raise StoreUnavailableError(f"object directory {self.root} is not writable: {error}") from None

    def describe(self) -> str:
        return f"directory {self.root}"

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def object_key_for(job_id: int, index: int, attempt_token: str, suffix: str) -> str:
    """The server-chosen key of an image file: unique per attempt, grouped by job."""
    return attempt_prefix(job_id, index, attempt_token) + suffix


def attempt_prefix(job_id: int, index: int, attempt_token: str) -> str:
    """The key prefix every file of one attempt at one image shares (derived from its lease token)."""
    return f"jobs/{job_id:08d}/{index:06d}-{attempt_token[:8]}"


def export_key_for(export_id: int, attempt_token: str, file_name: str) -> str:
    """The server-chosen key of an export's file: unique per attempt, grouped by export."""
    return f"exports/{export_id:08d}/{attempt_token[:8]}-{file_name}"


def open_image_store(settings: Settings) -> ImageStore:
    """The store the settings name: `s3://bucket/prefix` is S3-compatible, anything else a directory."""
    location = settings.object_store
    if location and location.startswith("s3://"):
        from models.s3_store import S3ImageStore  # boto3 loads only where a farm uses S3

        return S3ImageStore.from_url(location, endpoint_url=settings.s3_endpoint_url)
    return LocalImageStore(settings.resolved_object_dir)
