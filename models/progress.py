"""Job status and progress, derived from the job's image rows in one grouped query."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.image import Image, ImageStatus
from models.job import Job


@dataclass(frozen=True)
class JobProgress:
    """Counts per status and the fraction done, including the steps of running batches."""

    total: int
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    running_progress: float = 0.0

    @property
    def progress(self) -> float:
        """0 to 1; finished images count whole, running ones by their denoising step."""
        if self.total == 0 or not (self.queued or self.running):
            return 1.0  # also once deleted images were purged: the job has nothing left to do
        done = self.succeeded + self.failed + self.canceled + self.running_progress
        return round(min(1.0, done / self.total), 4)

    def status(self, canceled: bool) -> str:
        """queued, running, succeeded, failed or canceled."""
        if self.queued or self.running:
            return "running" if (self.running or self.succeeded or self.failed) else "queued"
        if canceled and self.canceled:
            return "canceled"
        if self.failed or self.canceled:
            return "failed"
        return "succeeded"


def job_progress(session: Session, jobs: list[Job]) -> dict[int, JobProgress]:
    """Progress for each job, keyed by job id."""
    if not jobs:
        return {}
    rows = session.execute(
        select(Image.job_id, Image.status, func.count(), func.coalesce(func.sum(Image.progress), 0.0))
        .where(Image.job_id.in_([job.id for job in jobs]))
        .group_by(Image.job_id, Image.status)
    ).all()
    counts: dict[int, dict[str, float]] = {job.id: {} for job in jobs}
    for job_id, status, count, progress_sum in rows:
        counts[job_id][status] = count
        if status == ImageStatus.RUNNING:
            counts[job_id]["running_progress"] = float(progress_sum)
    return {
        job.id: JobProgress(
            total=job.total,
            queued=int(counts[job.id].get(ImageStatus.QUEUED, 0)),
            running=int(counts[job.id].get(ImageStatus.RUNNING, 0)),
            succeeded=int(counts[job.id].get(ImageStatus.SUCCEEDED, 0)),
            failed=int(counts[job.id].get(ImageStatus.FAILED, 0)),
            canceled=int(counts[job.id].get(ImageStatus.CANCELED, 0)),
            running_progress=counts[job.id].get("running_progress", 0.0),
        )
        for job in jobs
    }
