"""A bulk job: the request as submitted; its images carry the per-image state."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, RowId, UTCDateTime, utcnow

if TYPE_CHECKING:
    from models.image import Image


class Job(Base):
    """One submitted bulk job (its status is derived from its images)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    model: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer)
    owner_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    # The validated request, kept so a job can be inspected or resubmitted as it was asked for.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    init_image_key: Mapped[str | None] = mapped_column(Text)
    mask_image_key: Mapped[str | None] = mapped_column(Text)  # inpainting: white is repainted
    # Where this job's webhook events go (its own URL, else its key's default when it was submitted);
    # kept apart from `spec` so finishing a batch never reads a big job's whole request.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_image_events: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    images: Mapped[list[Image]] = relationship(back_populates="job", order_by="Image.index")
