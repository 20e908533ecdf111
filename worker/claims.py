"""Claiming, renewing and releasing batches of image rows: the database is the queue.

A claim is one conditional UPDATE that moves up to N compatible queued items to
`running` under a fresh lease token; only rows still `queued` can be taken, so two
workers can never hold the same item. The token doubles as the batch's id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from models.base import utcnow
from models.image import Image, ImageStatus


@dataclass(frozen=True)
class Claim:
    """A batch this worker holds: its lease token and its rows (detached, read-only)."""

    token: str
    items: list[Image]


def claim_batch(
    sessions: sessionmaker[Session], model: str, worker: str, max_batch: int, lease_seconds: float
) -> Claim | None:
    """Take the best queued batch for `model`: the top item by priority and age plus its compatible peers."""
    for _ in range(5):  # another worker may win the race for the same rows; try the next best
        with sessions() as session:
            head = session.execute(
                select(Image.id, Image.batch_key, Image.run_alone)
                .where(Image.model == model, Image.status == ImageStatus.QUEUED)
                .order_by(Image.priority.desc(), Image.id)
                .limit(1)
            ).first()
        if head is None:
            return None
        token = uuid.uuid4().hex
        peers = (
            select(Image.id)
            .where(
                Image.model == model,
                Image.status == ImageStatus.QUEUED,
                Image.batch_key == head.batch_key,
                # An item that was in a batch when its worker died runs alone (see Image.run_alone).
                Image.id == head.id if head.run_alone else Image.run_alone.is_(False),
            )
            .order_by(Image.priority.desc(), Image.id)
            .limit(1 if head.run_alone else max_batch)
        )
        with sessions() as session:
            if session.bind.dialect.name == "postgresql":
                peers = peers.with_for_update(skip_locked=True)
            # A CTE is evaluated once; PostgreSQL may re-run a plain IN (subquery) per row,
            # and with SKIP LOCKED every re-run would pick new rows past the LIMIT.
            picked = peers.cte("picked")
            now = utcnow()
            session.execute(
                update(Image)
                .where(Image.id.in_(select(picked.c.id)), Image.status == ImageStatus.QUEUED)
                .values(
                    status=ImageStatus.RUNNING,
                    lease_token=token,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    worker=worker,
                    attempts=Image.attempts + 1,
                    started_at=now,
                    progress=0.0,
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
            items = list(
                session.scalars(
                    select(Image).options(joinedload(Image.job)).where(Image.lease_token == token).order_by(Image.id)
                )
            )
            session.expunge_all()
        if items:
            return Claim(token, items)
    return None


def renew_lease(sessions: sessionmaker[Session], token: str, lease_seconds: float, progress: float) -> int:
    """Extend the lease and record progress; returns how many items this worker still holds."""
    with sessions() as session:
        result = session.execute(
            update(Image)
            .where(Image.lease_token == token, Image.status == ImageStatus.RUNNING)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds), progress=progress)
        )
        session.commit()
        return result.rowcount


def release_for_retry(
    sessions: sessionmaker[Session], token: str, item_ids: list[int], error: str, max_attempts: int
) -> None:
    """Give items back to the queue after a failed try, or fail them once they used all attempts."""
    now = utcnow()
    with sessions() as session:
        held = and_(Image.id.in_(item_ids), Image.lease_token == token, Image.status == ImageStatus.RUNNING)
        session.execute(
            update(Image)
            .where(held, Image.attempts >= max_attempts)
            .values(status=ImageStatus.FAILED, error=error, finished_at=now, progress=0.0)
        )
        session.execute(
            update(Image)
            .where(held, Image.attempts < max_attempts)
            .values(status=ImageStatus.QUEUED, error=error, lease_token=None, lease_expires_at=None, progress=0.0)
        )
        session.commit()


def fail_items(sessions: sessionmaker[Session], token: str, item_ids: list[int], error: str) -> None:
    """Fail items for good (an error that retrying cannot fix)."""
    with sessions() as session:
        session.execute(
            update(Image)
            .where(Image.id.in_(item_ids), Image.lease_token == token, Image.status == ImageStatus.RUNNING)
            .values(status=ImageStatus.FAILED, error=error, finished_at=utcnow(), progress=0.0)
        )
        session.commit()


def queued_count(sessions: sessionmaker[Session], model: str) -> int:
    """Items of `model` still waiting to be claimed."""
    with sessions() as session:
        return session.scalar(select(func.count()).where(Image.model == model, Image.status == ImageStatus.QUEUED)) or 0


def expired_leases(session: Session, limit: int = 1000) -> list[Image]:
    """Running items whose worker stopped renewing the lease (it died, hung, or lost the database)."""
    return list(
        session.scalars(
            select(Image)
            .where(
                Image.status == ImageStatus.RUNNING,
                or_(Image.lease_expires_at < utcnow(), Image.lease_expires_at.is_(None)),
            )
            .limit(limit)
        )
    )
