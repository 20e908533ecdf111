"""Dataset exports: the row that asks for one, and every change of its state.

The database is the queue here too. An export is claimed with a lease (one conditional UPDATE, so
of several runners on several hosts exactly one wins); the runner renews the lease as it goes and
records each finished file; an export whose lease ran out (its runner died) is claimed again and
starts over, up to MAX_ATTEMPTS tries.

    queued ──claim──▶ running ──succeed──▶ succeeded
                        │  ▲ lease expired: claimed again (attempts < MAX_ATTEMPTS)
                        └──┴──fail / gave up──▶ failed
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text, and_, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from models.base import Base, RowId, UTCDateTime, utcnow

FORMATS = ("imagefolder", "webdataset", "zip")
MAX_ATTEMPTS = 3


class ExportStatus(enum.StrEnum):
    """queued, running, succeeded, failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Export(Base):
    """One requested dataset export and, once made, the files it made."""

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_claim", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    owner_key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # Whose images it may take: the owner's, or every owner's (None) for an admin key or with auth off.
    scope_key_id: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    # An ImageSelection as JSON (models/image_selection.py): ids, a job, or the gallery's filters.
    selection: Mapped[dict[str, Any]] = mapped_column(JSON)
    shard_size: Mapped[int | None] = mapped_column(Integer)  # webdataset: images per tar shard
    status: Mapped[str] = mapped_column(String(16), default=ExportStatus.QUEUED)
    images: Mapped[int] = mapped_column(Integer, default=0)  # how many the selection took when it ran
    done: Mapped[int] = mapped_column(Integer, default=0)
    # Files of the current attempt, each {"name", "key", "bytes", "images"}; complete once succeeded.
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Rows written so far, with `images`, gives progress; kept as a float for the API as jobs do.
    progress: Mapped[float] = mapped_column(Float, default=0.0)


@dataclass(frozen=True)
class Claim:
    """An export a runner now holds: its row as claimed, the lease token, and the files an earlier attempt left."""

    export_id: int
    token: str
    format: str
    selection: dict[str, Any]
    shard_size: int | None
    scope_key_id: int | None
    stale_files: list[dict[str, Any]]


def create(
    session: Session,
    *,
    owner_key_id: int | None,
    scope_key_id: int | None,
    format: str,
    selection: dict[str, Any],
    shard_size: int | None,
) -> Export:
    """Add a queued export in the caller's transaction (the caller commits)."""
    export = Export(
        owner_key_id=owner_key_id,
        scope_key_id=scope_key_id,
        format=format,
        selection=selection,
        shard_size=shard_size,
        status=ExportStatus.QUEUED,
        files=[],
    )
    session.add(export)
    session.flush()
    return export


def _claimable(now: datetime):
    expired = and_(Export.status == ExportStatus.RUNNING, Export.lease_expires_at < now)
    return or_(Export.status == ExportStatus.QUEUED, expired)


def claim(sessions: sessionmaker[Session], *, worker: str, lease_seconds: float) -> Claim | None:
    """Take the oldest queued export, or one whose runner's lease ran out; None when there is none.

    An export that has used up its attempts is failed instead of claimed.
    """
    now = utcnow()
    with sessions() as session:
        candidates = list(session.scalars(select(Export.id).where(_claimable(now)).order_by(Export.id).limit(5)))
        for export_id in candidates:
            token = secrets.token_hex(16)
            gave_up = session.execute(
                update(Export)
                .where(Export.id == export_id, _claimable(now), Export.attempts >= MAX_ATTEMPTS)
                .values(
                    status=ExportStatus.FAILED,
                    error=f"gave up after {MAX_ATTEMPTS} attempts (its runner stopped each time)",
                    lease_token=None,
                    lease_expires_at=None,
                    finished_at=now,
                )
            ).rowcount
            if gave_up:
                session.commit()
                continue
            stale = session.scalar(select(Export.files).where(Export.id == export_id)) or []
            taken = session.execute(
                update(Export)
                .where(Export.id == export_id, _claimable(now))
                .values(
                    status=ExportStatus.RUNNING,
                    lease_token=token,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=Export.attempts + 1,
                    worker=worker[:200],
                    started_at=now,
                    done=0,
                    progress=0.0,
                    files=[],
                    error=None,
                )
            ).rowcount
            session.commit()
            if taken == 1:
                row = session.get(Export, export_id)
                return Claim(
                    export_id, token, row.format, dict(row.selection), row.shard_size, row.scope_key_id, list(stale)
                )
    return None


def renew(
    sessions: sessionmaker[Session],
    *,
    export_id: int,
    token: str,
    lease_seconds: float,
    done: int,
    images: int,
    files: list[dict[str, Any]] | None = None,
) -> bool:
    """Extend the lease and record progress (and the files finished so far); False if the lease was lost."""
    values: dict[str, Any] = {
        "lease_expires_at": utcnow() + timedelta(seconds=lease_seconds),
        "done": done,
        "images": images,
        "progress": round(done / images, 4) if images else 0.0,
    }
    if files is not None:
        values["files"] = files
    return _held_update(sessions, export_id, token, values)


def succeed(
    sessions: sessionmaker[Session], *, export_id: int, token: str, images: int, files: list[dict[str, Any]]
) -> bool:
    """Mark the export made, with its files; False if the lease was lost (another runner took over)."""
    values = {
        "status": ExportStatus.SUCCEEDED,
        "done": images,
        "images": images,
        "progress": 1.0,
        "files": files,
        "lease_token": None,
        "lease_expires_at": None,
        "finished_at": utcnow(),
    }
    return _held_update(sessions, export_id, token, values)


def fail(sessions: sessionmaker[Session], *, export_id: int, token: str, error: str) -> bool:
    """Mark the export failed with the reason (a fault retrying cannot fix); False if the lease was lost."""
    values = {
        "status": ExportStatus.FAILED,
        "error": error[:2000],
        "lease_token": None,
        "lease_expires_at": None,
        "finished_at": utcnow(),
    }
    return _held_update(sessions, export_id, token, values)


def _held_update(sessions: sessionmaker[Session], export_id: int, token: str, values: dict[str, Any]) -> bool:
    with sessions() as session:
        changed = session.execute(
            update(Export)
            .where(Export.id == export_id, Export.lease_token == token, Export.status == ExportStatus.RUNNING)
            .values(**values)
        ).rowcount
        session.commit()
    return changed == 1
