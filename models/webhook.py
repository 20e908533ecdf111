"""Webhook deliveries: a transactional outbox, written in the transaction that finishes a job.

A row here means "tell this URL that this happened"; the dispatcher (worker/webhooks.py) sends it,
retrying with backoff, and records every attempt in `webhook_attempts`. The unique (job, event, image)
key makes writing an event twice harmless, so any code path that may finish a job can call
`record_job_events` without knowing whether another already did.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, load_only, mapped_column

from models.base import Base, RowId, UTCDateTime, utcnow
from models.image import FINAL_STATUSES, Image, ImageStatus
from models.job import Job
from models.key_options import read_options
from models.progress import job_progress

JOB_EVENTS = ("job.succeeded", "job.failed", "job.canceled")
IMAGE_FINISHED = "image.finished"
EVENTS = (*JOB_EVENTS, IMAGE_FINISHED)


class DeliveryStatus(enum.StrEnum):
    """pending (waiting for its next attempt), delivered (a 2xx came back), failed (gave up)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One event for one URL, until it is delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_event", "job_id", "event", "image_id", unique=True),
        # The dispatcher's claim: due pending rows, oldest first.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    # `webhook-id` header: the same for every attempt, so a receiver can drop duplicates.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[int] = mapped_column(RowId, ForeignKey("jobs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(RowId, default=0)  # 0 for job events
    owner_key_id: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set while a dispatcher is sending it; another may take it over once this time passes.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One try at a delivery: when, to which address, and what came back."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(RowId, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_seconds: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(64))  # the IP the connection was pinned to
    status_code: Mapped[int | None] = mapped_column(Integer)
    # delivered, http_error, refused (the address is not allowed), network_error
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing())


def default_webhook_url(session: Session, owner_key_id: int | None) -> str | None:
    """The key's default webhook URL, which a job without its own `webhook_url` takes at submit."""
    options = read_options(session, owner_key_id)
    return options.webhook_url if options is not None else None


def job_event(status: str) -> str | None:
    """The event a final job status sends (None while the job is still live)."""
    return {"succeeded": "job.succeeded", "failed": "job.failed", "canceled": "job.canceled"}.get(status)


def job_payload(job: Job, status: str, counts: dict[str, int]) -> dict[str, Any]:
    """The event body's `data`: the job's id, status, counts and where to read the rest."""
    return {
        "job_id": job.id,
        "status": status,
        "model": job.model,
        **counts,
        "url": f"/api/v1/jobs/{job.id}",
        "images_url": f"/api/v1/images?job_id={job.id}",
    }


def record_job_events(session: Session, job_ids: Iterable[int]) -> int:
    """In the caller's transaction: an outbox row for each of these jobs that is now final and has a webhook.

    The job rows are locked first (PostgreSQL), so of two transactions finishing the last images of one
    job the second waits and then sees the first's changes: the job cannot be missed by both.
    Returns how many events were written (duplicates are ignored by the unique key).
    """
    ids = sorted(set(job_ids))
    if not ids:
        return 0
    query = (
        select(Job)
        .options(load_only(Job.id, Job.model, Job.total, Job.owner_key_id, Job.canceled_at, Job.webhook_url))
        .where(Job.id.in_(ids), Job.webhook_url.is_not(None))
        .order_by(Job.id)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    jobs = list(session.scalars(query))
    progress = job_progress(session, jobs)
    rows = []
    for job in jobs:
        counts = progress[job.id]
        if counts.queued or counts.running:
            continue
        status = counts.status(job.canceled_at is not None)
        numbers = {
            "total": counts.total,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "canceled": counts.canceled,
        }
        rows.append(_row(job, job_event(status), 0, job.webhook_url, job_payload(job, status, numbers)))
    _insert_ignoring_duplicates(session, rows)
    return len(rows)


def record_image_events(session: Session, image_ids: Iterable[int]) -> int:
    """In the caller's transaction: `image.finished` for final images whose job asked for that event."""
    ids = sorted(set(image_ids))
    if not ids:
        return 0
    rows = []
    images = session.execute(
        select(Image, Job)
        .join(Job, Image.job_id == Job.id)
        .options(load_only(Job.id, Job.owner_key_id, Job.webhook_url))
        .where(
            Image.id.in_(ids),
            Image.status.in_(FINAL_STATUSES),
            Job.webhook_url.is_not(None),
            Job.webhook_image_events.is_(True),
        )
    ).all()
    for image, job in images:
        data = {
            "job_id": job.id,
            "image_id": image.id,
            "index": image.index,
            "status": image.status,
            "seed": image.seed,
            "error": image.error,
            "url": f"/api/v1/images/{image.id}/file" if image.status == ImageStatus.SUCCEEDED else None,
        }
        rows.append(_row(job, IMAGE_FINISHED, image.id, job.webhook_url, data))
    _insert_ignoring_duplicates(session, rows)
    return len(rows)


def _row(job: Job, event: str, image_id: int, url: str, data: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    return {
        "message_id": "msg_" + secrets.token_hex(16),
        "job_id": job.id,
        "image_id": image_id,
        "owner_key_id": job.owner_key_id,
        "event": event,
        "url": url,
        "payload": {"type": event, "timestamp": now.isoformat(), "data": data},
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def record_events(session: Session, *, image_ids: Iterable[int] = (), job_ids: Iterable[int] = ()) -> None:
    """In a lifecycle transition's transaction: the events its moves may have caused (see models/lifecycle.py)."""
    image_ids = list(image_ids)
    jobs = set(job_ids)
    if image_ids:
        # One narrow query answers "does any of these images' jobs have a webhook?": most have none.
        jobs |= set(
            session.scalars(
                select(Image.job_id)
                .join(Job, Image.job_id == Job.id)
                .where(Image.id.in_(image_ids), Job.webhook_url.is_not(None))
                .distinct()
            )
        )
        if jobs:
            record_image_events(session, image_ids)
    record_job_events(session, jobs)
