"""Idempotency keys: a retried `POST` with the same `Idempotency-Key` returns the job it made the first time."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, RowId, UTCDateTime, utcnow
from models.key_options import options_key

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255


class IdempotencyKey(Base):
    """A key a caller sent with a submit, the fingerprint of that request, and the job it made."""

    __tablename__ = "idempotency_keys"
    # The race between two requests with one key is settled by this constraint, not by a read.
    __table_args__ = (UniqueConstraint("owner_key_id", "key"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    owner_key_id: Mapped[int] = mapped_column(Integer)  # 0: callers without an API key
    key: Mapped[str] = mapped_column(String(MAX_KEY_CHARS))
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int] = mapped_column(RowId, ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


def request_fingerprint(route: str, body: Any) -> str:
    """SHA-256 of the route and the request body as canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_previous(session: Session, owner_key_id: int | None, key: str) -> IdempotencyKey | None:
    """The live record of `key` for this caller; an expired one is deleted so the key can be used again."""
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.owner_key_id == options_key(owner_key_id), IdempotencyKey.key == key
        )
    )
    if row is not None and row.created_at < utcnow() - TTL:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
        session.commit()
        return None
    return row


def new_record(owner_key_id: int | None, key: str, fingerprint: str, job_id: int) -> IdempotencyKey:
    """The row to add in the transaction that stores the job."""
    return IdempotencyKey(owner_key_id=options_key(owner_key_id), key=key, request_hash=fingerprint, job_id=job_id)
