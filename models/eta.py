"""Where a job stands in its model's queue and when it should be done, from the model's live throughput."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.image import Image, ImageStatus
from models.job import Job
from models.progress import JobProgress
from models.worker_record import WorkerRecord

RECENT = timedelta(minutes=2)
RENDER_SAMPLE = 50


@dataclass(frozen=True)
class Estimate:
    """Images ahead of the job's first waiting image, and seconds until the job should be done (None: unknown)."""

    queue_position: int | None
    eta_seconds: float | None


def model_throughput(session: Session, model: str, offline_after: float) -> float:
    """Images per second the farm renders for `model` now.

    The rate of the last two minutes when images finished in them; otherwise (the model was idle)
    its live workers times the per-image render time of its recent images. 0 when no worker serves it.
    """
    now = utcnow()
    workers = session.scalar(
        select(func.count()).where(
            WorkerRecord.model == model,
            WorkerRecord.last_seen >= now - timedelta(seconds=offline_after),
            WorkerRecord.state != "stopped",
        )
    )
    if not workers:
        return 0.0
    finished = session.scalar(
        select(func.count()).where(
            Image.model == model, Image.status == ImageStatus.SUCCEEDED, Image.finished_at >= now - RECENT
        )
    )
    if finished:
        return finished / RECENT.total_seconds()
    recent = (
        select(Image.render_seconds)
        .where(Image.model == model, Image.status == ImageStatus.SUCCEEDED, Image.render_seconds > 0)
        .order_by(Image.id.desc())
        .limit(RENDER_SAMPLE)
        .subquery()
    )
    seconds = session.scalar(select(func.avg(recent.c.render_seconds)))
    return workers / float(seconds) if seconds else 0.0


def estimate(session: Session, job: Job, progress: JobProgress, offline_after: float) -> Estimate:
    """The job's queue position and ETA; both None once it is final."""
    if not (progress.queued or progress.running):
        return Estimate(None, None)
    position, first = 0, None
    if progress.queued:
        first = session.scalar(
            select(func.min(Image.id)).where(Image.job_id == job.id, Image.status == ImageStatus.QUEUED)
        )
    priority = job.priority
    if first is not None:  # None also when a worker claimed the rest since the counts were read
        position = session.scalar(
            select(func.count()).where(
                Image.model == job.model,
                Image.status == ImageStatus.QUEUED,
                Image.job_id != job.id,
                or_(Image.priority > priority, and_(Image.priority == priority, Image.id < first)),
            )
        )
    throughput = model_throughput(session, job.model, offline_after)
    if throughput <= 0:
        return Estimate(position, None)
    remaining = progress.queued + progress.running - progress.running_progress
    return Estimate(position, round((position + remaining) / throughput, 1))
