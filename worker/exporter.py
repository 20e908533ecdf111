"""Making dataset exports on the worker side: claim one, stream its images into archives, upload them.

`ExportRunner.run_once()` is a background task (worker/background.py): it claims the oldest queued
export with a lease (models/export.py), reads the selected rows a chunk at a time and their PNGs one
at a time from the store, writes them through a format writer into a temporary directory, and uploads
each finished archive or shard with `ImageStore.put_fileobj`, so neither memory nor disk ever holds
the whole set. Progress and the files made so far are recorded as the lease is renewed; if the
runner dies, the lease runs out and another runner starts the export again and deletes what the dead
one had uploaded.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import export as exports
from models.image import Image
from models.image_selection import ImageSelection, count_selected, iter_selected
from models.image_store import ImageStore, export_key_for
from worker.dataset_formats import make_writer
from worker.encoding import infotext_for

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another runner holds the export now (this one was too slow to renew, or was presumed dead)."""


def png_infotext(png: bytes, image: Image) -> str:
    """The infotext embedded in a PNG (what a user's tools see), else the one its row describes."""
    try:
        with PILImage.open(io.BytesIO(png)) as picture:
            text = picture.info.get("parameters")
    except (OSError, SyntaxError, ValueError):
        text = None
    if text:
        return text
    return infotext_for(image)


class ExportRunner:
    """Claims and makes one export per pass."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ImageStore,
        worker: str,
        lease_seconds: float = 30.0,
        scratch_dir: Path | None = None,
    ):
        self.sessions = sessions
        self.store = store
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.scratch_dir = scratch_dir

    def run_once(self) -> int:
        """Make one export if one is waiting; returns how many were handled (0 or 1)."""
        claim = exports.claim(self.sessions, worker=self.worker, lease_seconds=self.lease_seconds)
        if claim is None:
            return 0
        # A runner that died mid-export left files under its own attempt's keys; they are worthless now.
        for stale in claim.stale_files:
            self.store.delete(stale["key"])
        log.info("export %d (%s) claimed by %s", claim.export_id, claim.format, self.worker)
        files: list[dict[str, Any]] = []
        try:
            images = self._make(claim, files)
        except LeaseLost:
            log.warning("export %d: lease lost to another runner; dropping this attempt", claim.export_id)
            self._delete(files)
            return 1
        except Exception as error:
            log.exception("export %d failed", claim.export_id)
            self._delete(files)
            exports.fail(
                self.sessions, export_id=claim.export_id, token=claim.token, error=f"{type(error).__name__}: {error}"
            )
            return 1
        if not exports.succeed(self.sessions, export_id=claim.export_id, token=claim.token, images=images, files=files):
            self._delete(files)
        else:
            log.info("export %d made: %d images in %d files", claim.export_id, images, len(files))
        return 1

    def _make(self, claim: exports.Claim, files: list[dict[str, Any]]) -> int:
        selection = ImageSelection.from_json(claim.selection)
        renew_every = max(0.5, self.lease_seconds / 3)
        with self.sessions() as session, tempfile.TemporaryDirectory(dir=self.scratch_dir) as scratch:
            # Images that arrive while the export runs are left out, so the count stays true.
            upto = session.scalar(select(func.max(Image.id))) or 0
            total = count_selected(session, selection, claim.scope_key_id, upto)
            session.rollback()  # no transaction open across the long read below (PostgreSQL snapshots)

            def upload(name: str, path: Path, count: int) -> None:
                key = export_key_for(claim.export_id, claim.token, name)
                # Recorded before the upload, so a runner that dies during it leaves no file nobody knows of.
                files.append({"name": name, "key": key, "bytes": path.stat().st_size, "images": count})
                self._renew(claim, done, total, files)
                with path.open("rb") as source:
                    self.store.put_fileobj(key, source)
                path.unlink()

            writer = make_writer(claim.format, Path(scratch), upload, claim.shard_size)
            done = 0
            renewed = time.monotonic()
            for image in iter_selected(session, selection, claim.scope_key_id, upto=upto):
                try:
                    png = self.store.read(image.object_key)
                except FileNotFoundError:
                    log.warning("export %d: image %d has no file in the store; left out", claim.export_id, image.id)
                    continue
                writer.add(image, png, png_infotext(png, image))
                done += 1
                if time.monotonic() - renewed > renew_every:
                    self._renew(claim, done, total, None)
                    renewed = time.monotonic()
            writer.close()
        return done

    def _renew(self, claim: exports.Claim, done: int, total: int, files: list[dict[str, Any]] | None) -> None:
        held = exports.renew(
            self.sessions,
            export_id=claim.export_id,
            token=claim.token,
            lease_seconds=self.lease_seconds,
            done=done,
            images=max(total, done),
            files=list(files) if files is not None else None,
        )
        if not held:
            raise LeaseLost()

    def _delete(self, files: list[dict[str, Any]]) -> None:
        for item in files:
            self.store.delete(item["key"])
