"""The reaper: puts back work whose worker vanished and re-publishes work the broker lost.

Safe to run in several processes at once: every change is a conditional update.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.image import Image, ImageStatus
from models.image_store import ImageStore, object_key_for
from models.queue import RenderQueue
from worker.claims import expired_leases

log = logging.getLogger(__name__)

LOST_WORKER = "the worker stopped renewing its lease (it died, hung or lost the database)"


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: int = 0
    failed: int = 0
    republished: dict[str, int] = field(default_factory=dict)


class Reaper:
    """One pass = expire leases, then make sure every model with queued work has messages."""

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
        report = ReapReport()
        self._expire_leases(report)
        self._republish(report)
        if report.requeued or report.failed or report.republished:
            log.info(
                "reaper: requeued %d, failed %d, republished %s", report.requeued, report.failed, report.republished
            )
        return report

    def _expire_leases(self, report: ReapReport) -> None:
        taken_back: list[tuple[int, int, str]] = []
        with self.sessions() as session:
            stale = expired_leases(session)
            batch_sizes = Counter(item.lease_token for item in stale)
            for item in stale:
                token = item.lease_token  # read first: the update below also clears it on the loaded row
                held = (Image.id == item.id, Image.status == ImageStatus.RUNNING, Image.lease_token == token)
                if item.attempts >= self.max_attempts:
                    error = f"gave up after {item.attempts} attempts; last: {item.error or LOST_WORKER}"
                    values = dict(status=ImageStatus.FAILED, error=error, finished_at=utcnow(), progress=0.0)
                    changed = session.execute(update(Image).where(*held).values(**values)).rowcount
                    report.failed += changed
                else:
                    # If the worker died during a batch, any one item may have killed it: run each alone.
                    values = dict(
                        status=ImageStatus.QUEUED,
                        lease_token=None,
                        lease_expires_at=None,
                        progress=0.0,
                        error=item.error or LOST_WORKER,
                        run_alone=batch_sizes[token] > 1 or item.run_alone,
                    )
                    changed = session.execute(update(Image).where(*held).values(**values)).rowcount
                    report.requeued += changed
                if changed and token:
                    taken_back.append((item.job_id, item.index, token))
            session.commit()
        for job_id, index, token in taken_back:
            self._delete_attempt_files(job_id, index, token)

    def _delete_attempt_files(self, job_id: int, index: int, token: str) -> None:
        """A worker killed between writing its files and recording them leaves them behind; the
        keys are derived from the lease token, so the attempt's files are found without a scan."""
        for suffix in (".png", ".thumb.webp"):
            self.store.delete(object_key_for(job_id, index, token, suffix))

    def _republish(self, report: ReapReport) -> None:
        with self.sessions() as session:
            waiting = session.execute(
                select(Image.model, func.count()).where(Image.status == ImageStatus.QUEUED).group_by(Image.model)
            ).all()
        for model, count in waiting:
            if self.queue.depth(model) == 0:
                # Queued in the database but nothing in Redis: a restart or failed publish lost it.
                self.queue.publish_for_items(model, count, self.max_batch)
                report.republished[model] = count


class ReaperThread:
    """Runs the reaper every `interval` seconds in a daemon thread of a long-lived process."""

    def __init__(self, reaper: Reaper, interval: float):
        self.reaper = reaper
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reaper.run_once()
            except Exception as error:  # the broker or database may be down; try again next round
                log.warning("reaper pass failed: %s", error)
