"""Storing a finished image exactly once: file first (atomically), then the row, conditionally.

If the row cannot be updated (the lease was lost to the reaper, or the database stays
down through every retry) the files just written are deleted again, so there is never
a file without a row; the item's lease then expires and it is rendered again.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_chain, wait_fixed

from models import lifecycle
from models.image import Image
from models.image_store import ImageStore, object_key_for
from worker.encoding import encode_png, encode_thumbnail, infotext_for

log = logging.getLogger(__name__)

# Seconds before each retry of a batch's database write (tenacity runs the loop).
DB_RETRY_DELAYS = (0.5, 1, 2, 4, 8)
WRITER_THREADS = 4


@dataclass(frozen=True)
class Rendered:
    """One finished picture and the row it belongs to."""

    item: Image
    picture: PILImage.Image
    render_seconds: float


class ResultStore:
    """Encodes, writes and records finished images for one claim."""

    def __init__(self, sessions: sessionmaker[Session], store: ImageStore, model_hash: str):
        self.sessions = sessions
        self.store = store
        self.model_hash = model_hash
        self._writers = ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="writer")

    def save_batch(self, token: str, batch: list[Rendered], renewing: AbstractContextManager | None = None) -> int:
        """Store a batch's images; returns how many are now recorded as succeeded by this worker.

        Files are written first, then every row in one transaction (one commit per batch,
        not per image); the files of rows that could not be recorded are deleted again.
        `renewing` (the lease keeper's lock) is held while the rows are recorded.
        """
        written: list[tuple[int, dict]] = []
        # Files are written in parallel: each waits on its own fsync, which the file system
        # groups into one journal commit, so a batch costs about one disk flush, not one per file.
        futures = [(rendered, self._writers.submit(self._write_files, token, rendered)) for rendered in batch]
        for rendered, future in futures:
            try:
                written.append((rendered.item.id, future.result()))
            except Exception:
                log.exception("could not write image %s; its lease will expire and it will run again", rendered.item.id)
        try:
            with renewing or nullcontext():
                recorded = self._record(token, written)
        except OperationalError as error:
            log.error("database unavailable while saving batch %s; it will be rendered again: %s", token[:8], error)
            recorded = set()
        for item_id, values in written:
            if item_id not in recorded:
                self._discard(item_id, values)
        return len(recorded)

    def _discard(self, item_id: int, values: dict) -> None:
        """Delete the files of an image whose row was not recorded (the reaper retries if this fails)."""
        try:
            self.store.delete(values["object_key"])
            self.store.delete(values["thumb_key"])
        except Exception as error:
            log.warning("could not delete the unrecorded files of image %s: %s", item_id, error)

    def _write_files(self, token: str, rendered: Rendered) -> dict:
        item = rendered.item
        item.model_hash = self.model_hash
        png = encode_png(rendered.picture, infotext_for(item))
        key = object_key_for(item.job_id, item.index, token, ".png")
        thumb_key = object_key_for(item.job_id, item.index, token, ".thumb.webp")
        self.store.put(key, png)
        # A thumbnail can always be made again from its PNG, so it does not wait for the disk.
        self.store.put(thumb_key, encode_thumbnail(rendered.picture), durable=False)
        return dict(
            object_key=key,
            thumb_key=thumb_key,
            sha256=hashlib.sha256(png).hexdigest(),
            nsfw=bool(item.nsfw),
            model_hash=self.model_hash,
            render_seconds=round(rendered.render_seconds, 4),
        )

    def _record(self, token: str, written: list[tuple[int, dict]]) -> set[int]:
        """Mark rows succeeded if this worker still holds them; retries the transaction on database errors.

        A retry is safe: `succeed` is conditional on the lease and counts writes a lost reply already made.
        """
        results = dict(written)

        def announce(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0
            log.warning(
                "database error saving batch %s (try %d): %s; retrying in %ss",
                token[:8],
                state.attempt_number,
                state.outcome.exception(),
                wait,
            )

        retrying = Retrying(
            retry=retry_if_exception_type(OperationalError),
            wait=wait_chain(*(wait_fixed(delay) for delay in DB_RETRY_DELAYS)),
            stop=stop_after_attempt(len(DB_RETRY_DELAYS) + 1),
            before_sleep=announce,
            reraise=True,
        )
        recorded = retrying(lifecycle.succeed, self.sessions, token=token, results=results)
        lost = len(results) - len(recorded)
        if lost:
            log.warning("%d images of batch %s are no longer held by this worker; discarding", lost, token[:8])
        return recorded
