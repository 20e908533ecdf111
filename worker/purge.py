"""The purge: removes images deleted longer ago than the grace period, rows then files, beside the workers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from models.curation import PURGE_BATCH, purge_deleted
from models.image_store import ImageStore

log = logging.getLogger(__name__)


@dataclass
class Purger:
    """One pass = purge expired deletes, a batch at a time until none is left (run by a ReaperThread)."""

    sessions: sessionmaker[Session]
    store: ImageStore
    grace_seconds: float

    def run_once(self) -> int:
        """Purge what has expired; how many images went."""
        total = 0
        while True:
            purged = purge_deleted(self.sessions, self.store, grace_seconds=self.grace_seconds)
            total += purged
            if purged < PURGE_BATCH:
                break
        if total:
            log.info("purged %d deleted images and their files", total)
        return total
