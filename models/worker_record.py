"""Heartbeat rows: what each worker says about itself every few seconds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, RowId, UTCDateTime, utcnow


class WorkerRecord(Base):
    """The last heartbeat of one worker, keyed by its Celery node name (e.g. `gpu0@host`)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64))
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="starting")
    current_job_id: Mapped[int | None] = mapped_column(RowId)
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    model_loads: Mapped[int] = mapped_column(Integer, default=0)
    # From NVML at each heartbeat, where the driver and nvidia-ml-py are present; else None.
    gpu_memory_used_mb: Mapped[int | None] = mapped_column(Integer)
    gpu_utilization: Mapped[float | None] = mapped_column(Float)
    # What the worker's warm-up chose and measured, and how long its start took (worker/tuning.py).
    configuration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
