"""One requested image: its generation parameters, its place in the queue, and its result."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, RowId, UTCDateTime, utcnow

if TYPE_CHECKING:
    from models.job import Job


class ImageStatus(enum.StrEnum):
    """Life cycle of one image; the first two are live, the rest are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATUSES = (ImageStatus.SUCCEEDED, ImageStatus.FAILED, ImageStatus.CANCELED)


class Image(Base):
    """A row per requested image; the database, not the broker, says what must still run."""

    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_job_index", "job_id", "index", unique=True),
        Index("ix_images_status_id", "status", "id"),
        Index("ix_images_lease", "status", "lease_expires_at"),
        # Covers a job's status poll: counts and running progress without reading the rows.
        Index("ix_images_job_status", "job_id", "status", "progress"),
        # Gallery filters by model, and by date, newest first.
        Index("ix_images_model_status_id", "model", "status", "id"),
        Index("ix_images_queued_at", "queued_at"),
        # Curation: the rating filter newest first; the trash and the purge of expired deletes.
        Index("ix_images_rating_id", "rating", "id"),
        Index("ix_images_deleted_at", "deleted_at"),
        Index("ix_images_deletion_id", "deletion_id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    job_id: Mapped[int] = mapped_column(RowId, ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    owner_key_id: Mapped[int | None] = mapped_column(Integer, index=True)

    # Generation parameters: together with the model they decide the picture.
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger, index=True)
    steps: Mapped[int] = mapped_column(Integer)
    guidance_scale: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    scheduler: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    model_hash: Mapped[str | None] = mapped_column(String(64))
    strength: Mapped[float | None] = mapped_column(Float)
    clip_skip: Mapped[int] = mapped_column(Integer, default=1)
    loras: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Items with equal batch keys can share one pipeline call (same model, size, steps, sampler...).
    batch_key: Mapped[str] = mapped_column(String(64))

    # Queue state.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    lease_token: Mapped[str | None] = mapped_column(String(64), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set after a worker died holding this item in a batch: it then runs alone, so one
    # poison item cannot use up the attempts of the innocent items batched with it.
    run_alone: Mapped[bool] = mapped_column(Boolean, default=False)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Result.
    object_key: Mapped[str | None] = mapped_column(Text)
    thumb_key: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    render_seconds: Mapped[float | None] = mapped_column(Float)
    nsfw: Mapped[bool] = mapped_column(Boolean, default=False)

    # Curation (models/curation.py): 1 starred, 0 not rated, -1 rejected; a soft delete can be undone
    # until the purge removes the row and its files, SDFARM_DELETE_GRACE_SECONDS after `deleted_at`.
    rating: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One id per delete action, so "undo" restores exactly what that action deleted.
    deletion_id: Mapped[str | None] = mapped_column(String(32))

    job: Mapped[Job] = relationship(back_populates="images")


# The claim query: queued items of one model, highest priority first, oldest first; in exactly that
# order, so no other index (the primary key's id order) can look as good to the planner.
Index("ix_images_claim", Image.model, Image.status, Image.priority.desc(), Image.id)
