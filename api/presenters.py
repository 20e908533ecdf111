"""Rows to response shapes (see schemas.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.schemas import ImageOut, JobOut, JobSummary
from api.visibility import hide_paths
from models.base import utcnow
from models.image import Image, ImageStatus
from models.job import Job
from models.progress import JobProgress
from models.worker_record import WorkerRecord


def image_out(image: Image) -> ImageOut:
    """The API view of an image row."""
    done = image.status == ImageStatus.SUCCEEDED and image.object_key
    return ImageOut(
        id=image.id,
        job_id=image.job_id,
        index=image.index,
        prompt=image.prompt,
        negative_prompt=image.negative_prompt,
        seed=image.seed,
        steps=image.steps,
        guidance_scale=image.guidance_scale,
        width=image.width,
        height=image.height,
        sampler=image.scheduler,
        model=image.model,
        model_hash=image.model_hash,
        clip_skip=image.clip_skip,
        strength=image.strength,
        loras=image.loras or [],
        status=image.status,
        attempts=image.attempts,
        error=hide_paths(image.error),
        worker=image.worker,
        progress=image.progress,
        queued_at=image.queued_at,
        started_at=image.started_at,
        finished_at=image.finished_at,
        render_seconds=image.render_seconds,
        sha256=image.sha256,
        nsfw=bool(image.nsfw),
        url=f"/api/v1/images/{image.id}/file" if done else None,
        thumbnail_url=f"/api/v1/images/{image.id}/thumbnail" if done and image.thumb_key else None,
    )


def online_workers_by_model(session: Session, offline_after: float) -> dict[str, int]:
    """How many workers of each model sent a heartbeat recently."""
    since = utcnow() - timedelta(seconds=offline_after)
    rows = session.execute(
        select(WorkerRecord.model, func.count())
        .where(WorkerRecord.last_seen >= since, WorkerRecord.state != "stopped")
        .group_by(WorkerRecord.model)
    ).all()
    return {model: count for model, count in rows}


def job_summary(job: Job, progress: JobProgress, serving: dict[str, int]) -> JobSummary:
    """A job as lists show it: counts and progress, and its first prompt, never its whole spec."""
    spec = job.spec or {}
    prompts = spec.get("prompts") or [item.get("prompt", "") for item in spec.get("items") or []]
    return JobSummary(
        **_job_fields(job, progress, serving),
        first_prompt=(prompts[0] if prompts else "")[:200],
        prompt_count=len(prompts),
    )


def job_out(
    job: Job, progress: JobProgress, serving: dict[str, int], images: list[Image] | None = None, truncated: bool = False
) -> JobOut:
    """The API view of one job, with its spec (and its images when given)."""
    summary = job_summary(job, progress, serving)
    return JobOut(
        **summary.model_dump(),
        spec=job.spec,
        images=[image_out(image) for image in images] if images is not None else None,
        images_truncated=truncated,
    )


def _job_fields(job: Job, progress: JobProgress, serving: dict[str, int]) -> dict:
    return dict(
        id=job.id,
        status=progress.status(job.canceled_at is not None),
        model=job.model,
        priority=job.priority,
        created_at=job.created_at,
        canceled_at=job.canceled_at,
        total=progress.total,
        queued=progress.queued,
        running=progress.running,
        succeeded=progress.succeeded,
        failed=progress.failed,
        canceled=progress.canceled,
        progress=progress.progress,
        waiting_for_worker=bool(progress.queued) and serving.get(job.model, 0) == 0,
        images_url=f"/api/v1/images?job_id={job.id}",
    )
