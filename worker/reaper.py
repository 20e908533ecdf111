"""The reaper: puts back work whose worker vanished and re-publishes work the broker lost.

Safe to run in several processes at once: every change is a conditional update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from models import lifecycle
from models.image_store import ImageStore, attempt_prefix
from models.queue import RenderQueue

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: int = 0
    failed: int = 0
    republished: dict[str, int] = field(default_factory=dict)


class Reaper:
    """One pass = take back expired leases (and their files), then make sure queued work has messages."""

    def __init__(
        self, sessions: sessionmaker[Session], queue: RenderQueue, store: ImageStore, max_attempts: int, max_batch: int
    ):
        self.sessions = sessions
        self.queue = queue
        self.store = store
        self.max_attempts = max_attempts
        self.max_batch = max_batch

    def run_once(self) -> ReapReport:
        """Do one pass and say what changed."""
        reaped = lifecycle.reap(self.sessions, max_attempts=self.max_attempts)
        for job_id, index, token in reaped.attempts:
            self._delete_attempt_files(job_id, index, token)
        republished = lifecycle.republish_lost(self.sessions, self.queue, max_batch=self.max_batch)
        report = ReapReport(reaped.requeued, reaped.failed, republished)
        if report.requeued or report.failed or report.republished:
            log.info(
                "reaper: requeued %d, failed %d, republished %s", report.requeued, report.failed, report.republished
            )
        return report

    def _delete_attempt_files(self, job_id: int, index: int, token: str) -> None:
        """A worker killed between writing its files and recording them leaves them behind; the
        keys start with a prefix derived from the lease token, so one listing finds them all."""
        try:
            for key in list(self.store.keys(attempt_prefix(job_id, index, token))):
                self.store.delete(key)
        except Exception as error:  # the store may be down; the lease is back either way
            log.warning(
                "could not delete the files of attempt %s at image %d of job %d: %s", token[:8], index, job_id, error
            )
