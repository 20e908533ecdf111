"""Storing a finished image exactly once: file first (atomically), then the row, conditionally.

If the row cannot be updated (the lease was lost to the reaper, or the database stays
down through every retry) the files just written are deleted again, so there is never
a file without a row; the item's lease then expires and it is rendered again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.image import Image, ImageStatus
from models.image_store import ImageStore, object_key_for
from worker.encoding import encode_png, encode_thumbnail, infotext_for

log = logging.getLogger(__name__)

DB_RETRY_DELAYS = (0.5, 1, 2, 4, 8)


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

    def save(self, token: str, rendered: Rendered) -> bool:
        """Store one image; True when it is now recorded as succeeded by this worker."""
        item = rendered.item
        item.model_hash = self.model_hash
        png = encode_png(rendered.picture, infotext_for(item))
        thumbnail = encode_thumbnail(rendered.picture)
        key = object_key_for(item.job_id, item.index, token, ".png")
        thumb_key = object_key_for(item.job_id, item.index, token, ".thumb.webp")
        self.store.put(key, png)
        self.store.put(thumb_key, thumbnail)
        values = dict(
            status=ImageStatus.SUCCEEDED,
            object_key=key,
            thumb_key=thumb_key,
            sha256=hashlib.sha256(png).hexdigest(),
            nsfw=bool(item.nsfw),
            model_hash=self.model_hash,
            finished_at=utcnow(),
            progress=1.0,
            error=None,
            render_seconds=round(rendered.render_seconds, 4),
            lease_expires_at=None,
        )
        try:
            recorded = self._record(token, item.id, values)
        except OperationalError as error:
            log.error("database unavailable while saving image %s; it will be rendered again: %s", item.id, error)
            recorded = False
        if not recorded:
            self.store.delete(key)
            self.store.delete(thumb_key)
        return recorded

    def _record(self, token: str, item_id: int, values: dict) -> bool:
        for attempt, delay in enumerate((*DB_RETRY_DELAYS, None)):
            try:
                with self.sessions() as session:
                    result = session.execute(
                        update(Image)
                        .where(Image.id == item_id, Image.lease_token == token, Image.status == ImageStatus.RUNNING)
                        .values(**values)
                    )
                    session.commit()
                    if result.rowcount == 1:
                        return True
                    # A retry after a commit whose reply was lost finds its own write already there.
                    if session.get(Image, item_id).object_key == values["object_key"]:
                        return True
                    log.warning("image %s is no longer held by this worker (lease lost); discarding", item_id)
                    return False
            except OperationalError:
                if delay is None:
                    raise
                log.warning("database error saving image %s (try %d); retrying in %ss", item_id, attempt + 1, delay)
                time.sleep(delay)
        return False
