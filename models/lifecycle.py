"""The image lifecycle: every change of an image's status, and every "work for model M" message.

The database is the queue. Each transition is one function issuing one conditional UPDATE
whose WHERE clause names the states it may move from, the lease that must still be held
where that matters, and that the job is not canceled. Actors (API processes, workers and
reapers on many hosts) race freely: the loser's UPDATE simply matches no row.

    transition       from             to                     guard
    enqueue          (new)            queued                 inside the job's own transaction
    claim            queued           running                job not canceled; attempts + 1; a new lease
    renew            running          running                lease held; job not canceled
    succeed          running          succeeded              lease held
    fail             running          failed                 lease held (retrying cannot help)
    release          running          queued/failed/canceled lease held; failed at the attempt cap
    reap             running          queued/failed/canceled lease expired; failed at the attempt cap;
                                                             a dead batch's try is given back
    unclaim          running          queued/canceled        lease held; a claim never rendered gives
                                                             its attempt back
    release_worker   running          queued/canceled        the worker's own rows, at its shutdown;
                                                             the attempt is given back
    cancel           queued, running  canceled               the whole job

Nothing moves an image out of a final state (succeeded, failed, canceled). A canceled job never
runs again: cancel takes its running rows too (their batch notices at its next renewal, and what
it renders is discarded because `succeed` needs a running row), claims skip canceled jobs, and
every way back to the queue turns a canceled job's row into `canceled` instead.
Nothing outside this module assigns `Image.status` (tests/models/test_lifecycle_rules.py
checks the source tree), and nothing else publishes to the render queues.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import String, and_, bindparam, case, cast, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased, joinedload, sessionmaker

from models.base import utcnow
from models.image import Image, ImageStatus
from models.job import Job
from models.queue import RenderQueue
from models.webhook import record_events

log = logging.getLogger(__name__)

LIVE = (ImageStatus.QUEUED, ImageStatus.RUNNING)
# The allowed moves, for readers and for the property test; each function below enforces its own row.
TRANSITIONS: dict[str, tuple[tuple[ImageStatus, ...], tuple[ImageStatus, ...]]] = {
    "claim": ((ImageStatus.QUEUED,), (ImageStatus.RUNNING,)),
    "renew": ((ImageStatus.RUNNING,), (ImageStatus.RUNNING,)),
    "succeed": ((ImageStatus.RUNNING,), (ImageStatus.SUCCEEDED,)),
    "fail": ((ImageStatus.RUNNING,), (ImageStatus.FAILED,)),
    "release": ((ImageStatus.RUNNING,), (ImageStatus.QUEUED, ImageStatus.FAILED, ImageStatus.CANCELED)),
    "reap": ((ImageStatus.RUNNING,), (ImageStatus.QUEUED, ImageStatus.FAILED, ImageStatus.CANCELED)),
    "unclaim": ((ImageStatus.RUNNING,), (ImageStatus.QUEUED, ImageStatus.CANCELED)),
    "release_worker": ((ImageStatus.RUNNING,), (ImageStatus.QUEUED, ImageStatus.CANCELED)),
    "cancel": (LIVE, (ImageStatus.CANCELED,)),
}
LOST_WORKER = "the worker stopped renewing its lease (it died, hung or lost the database)"
# How many times a claim tries the next best batch after losing a race for rows.
CLAIM_RACES = 5


@dataclass(frozen=True)
class Claim:
    """A batch a worker holds: its lease token (also the batch's id) and its rows (detached, read-only)."""

    token: str
    items: list[Image]


@dataclass(frozen=True)
class Reaped:
    """What one reap did: counts, and the attempts whose files may have been left behind."""

    requeued: int = 0
    failed: int = 0
    # (job id, image index, lease token) of each taken-back attempt: its object keys derive from these.
    attempts: list[tuple[int, int, str]] = field(default_factory=list)


def _held(token: str, image_ids: Iterable[int] | None = None):
    """Rows still running under lease `token` (optionally only `image_ids`)."""
    clauses = [Image.lease_token == token, Image.status == ImageStatus.RUNNING]
    if image_ids is not None:
        clauses.append(Image.id.in_(list(image_ids)))
    return and_(*clauses)


def _job_canceled():
    return exists().where(Job.id == Image.job_id, Job.canceled_at.is_not(None))


def _job_not_canceled():
    """The guard every move into `queued` or `running` carries."""
    return ~_job_canceled()


def _back_to_queue(error, now: datetime, max_attempts: int | None, attempts=Image.attempts) -> dict:
    """SET values that put a running row back in the queue: failed once `attempts` (the count that
    stands after this move) reaches `max_attempts` (no cap when None), canceled if its job was
    canceled meanwhile, else queued."""
    at_cap = attempts >= max_attempts if max_attempts is not None else literal(False)
    status = case(
        (at_cap, literal(ImageStatus.FAILED.value)),
        (_job_canceled(), literal(ImageStatus.CANCELED.value)),
        else_=literal(ImageStatus.QUEUED.value),
    )
    finished = or_(at_cap, _job_canceled())
    return {
        Image.status: status,
        Image.finished_at: case((finished, literal(now, Image.finished_at.type)), else_=Image.finished_at),
        Image.error: error,
        Image.lease_expires_at: None,
        Image.progress: 0.0,
    }


def _attempt_given_back() -> dict:
    """SET values that put a running row back in the queue (canceled if its job was) without counting
    its try: the row was interrupted by the farm, not by its own doing."""
    return {**_back_to_queue(Image.error, utcnow(), max_attempts=None), Image.attempts: Image.attempts - 1}


# -- creation --------------------------------------------------------------------------------


def enqueue(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Insert a job's image rows as `queued`; joins the caller's transaction (the job row commits with them)."""
    session.execute(
        insert(Image),
        [{**row, "status": ImageStatus.QUEUED, "attempts": 0, "progress": 0.0, "run_alone": False} for row in rows],
    )


# -- worker side -------------------------------------------------------------------------------


def claim(sessions: sessionmaker[Session], *, model: str, worker: str, max_batch: int, lease_seconds: float):
    """queued -> running: the best batch for `model` (top item by priority and age, plus compatible peers).

    Returns a Claim, or None when nothing is claimable.
    """
    for _ in range(CLAIM_RACES):  # another worker may win the race for the same rows; try the next best
        queued = and_(Image.model == model, Image.status == ImageStatus.QUEUED)
        with sessions() as session:
            # The oldest item of the highest waiting priority: the first entry of the claim index,
            # which is kept in this order (priority descending, then id), however long the queue.
            head = session.execute(
                select(Image.id, Image.batch_key, Image.run_alone, Image.priority)
                .where(queued, _job_not_canceled())
                .order_by(Image.priority.desc(), Image.id)
                .limit(1)
            ).first()
        if head is None:
            return None
        token = uuid.uuid4().hex
        peers = (
            select(Image.id)
            .where(
                queued,
                Image.batch_key == head.batch_key,
                # An item that was in a batch when its worker died runs alone (see Image.run_alone).
                Image.id == head.id if head.run_alone else Image.run_alone.is_(False),
            )
            .order_by(Image.priority.desc(), Image.id)  # the claim index's order: read from its start
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
                .where(Image.id.in_(select(picked.c.id)), Image.status == ImageStatus.QUEUED, _job_not_canceled())
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
            # Read back inside the claim's own transaction: one commit, no second transaction to open.
            items = list(
                session.scalars(
                    select(Image).options(joinedload(Image.job)).where(Image.lease_token == token).order_by(Image.id)
                )
            )
            session.commit()
            session.expunge_all()
        if items:
            return Claim(token, items)
    return None


def renew(sessions: sessionmaker[Session], *, token: str, lease_seconds: float, progress: float) -> int:
    """running -> running: extend the lease and record progress; returns how many rows are still held.

    0 means the batch is no longer this worker's (saved, failed, canceled or reaped): stop working on it.
    """
    with sessions() as session:
        held = session.execute(
            update(Image)
            .where(_held(token), _job_not_canceled())
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds), progress=progress)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        return held


def succeed(sessions: sessionmaker[Session], *, token: str, results: Mapping[int, dict[str, Any]]) -> set[int]:
    """running -> succeeded for each image id in `results` (its stored files' keys, sha256, ...), in one commit.

    Returns the ids recorded: those this lease still held, plus those a previous try already recorded
    (a retry after a commit whose reply was lost finds its own writes there).
    """
    if not results:
        return set()
    columns = tuple(sorted({name for values in results.values() for name in values}))
    parameters: dict[str, Any] = {"token": token, "now": utcnow()}
    for number, (image_id, values) in enumerate(results.items()):
        parameters[f"id_{number}"] = image_id
        parameters.update({f"set_{name}_{number}": values.get(name) for name in columns})
    with sessions() as session:
        recorded = set(session.scalars(_succeed_statement(len(results), columns), parameters))
        # The job's end (and each image's, where asked) goes out in this same transaction.
        record_events(session, image_ids=recorded)
        session.commit()
        missing = [image_id for image_id in results if image_id not in recorded]
        if missing:
            already = session.execute(
                select(Image.id, Image.object_key).where(
                    Image.id.in_(missing), Image.status == ImageStatus.SUCCEEDED, Image.lease_token == token
                )
            ).all()
            recorded.update(image_id for image_id, key in already if key == results[image_id].get("object_key"))
    return recorded


@lru_cache(maxsize=64)
def _succeed_statement(rows: int, columns: tuple[str, ...]):
    """The UPDATE of `succeed` for a batch of `rows` images: one statement for the whole batch, each result
    column a CASE on the row's id. Its values are parameters, so it is built once per batch shape, not
    once per batch (building it is most of a save's CPU in the worker)."""
    ids = [bindparam(f"id_{number}", type_=Image.id.type) for number in range(rows)]
    per_row = {}
    for name in columns:
        column = getattr(Image, name)
        by_id = {ids[number]: bindparam(f"set_{name}_{number}", type_=column.type) for number in range(rows)}
        per_row[column] = case(by_id, value=Image.id, else_=column)
    return (
        update(Image)
        .where(Image.id.in_(ids), _held(bindparam("token", type_=Image.lease_token.type)))
        .values(
            {
                **per_row,
                Image.status: ImageStatus.SUCCEEDED,
                Image.finished_at: bindparam("now", type_=Image.finished_at.type),
                Image.progress: 1.0,
                Image.error: None,
                Image.lease_expires_at: None,
            }
        )
        .returning(Image.id)
        .execution_options(synchronize_session=False)
    )


def fail(sessions: sessionmaker[Session], *, token: str, image_ids: list[int], error: str) -> int:
    """running -> failed, for good: an error that retrying cannot fix. Returns how many moved."""
    with sessions() as session:
        changed = session.execute(
            update(Image)
            .where(_held(token, image_ids))
            .values(status=ImageStatus.FAILED, error=error[:2000], finished_at=utcnow(), progress=0.0)
            .execution_options(synchronize_session=False)
        ).rowcount
        record_events(session, image_ids=image_ids)
        session.commit()
        return changed


def release(sessions: sessionmaker[Session], *, token: str, image_ids: list[int], error: str, max_attempts: int) -> int:
    """running -> queued after a failed try (failed once every attempt is used). Returns how many moved."""
    with sessions() as session:
        changed = session.execute(
            update(Image)
            .where(_held(token, image_ids))
            .values(_back_to_queue(error[:2000], utcnow(), max_attempts))
            .execution_options(synchronize_session=False)
        ).rowcount
        record_events(session, image_ids=image_ids)  # at the attempt cap the job may have ended
        session.commit()
        return changed


def unclaim(sessions: sessionmaker[Session], *, token: str) -> int:
    """running -> queued (canceled if its job was) for a claim that was never rendered; the attempt is
    given back. Returns how many moved."""
    with sessions() as session:
        moved = session.execute(
            update(Image)
            .where(_held(token))
            .values(_attempt_given_back())
            .returning(Image.job_id, Image.status)
            .execution_options(synchronize_session=False)
        ).all()
        record_events(session, job_ids=[row.job_id for row in moved if row.status != ImageStatus.QUEUED])
        session.commit()
        return len(moved)


def release_worker(sessions: sessionmaker[Session], *, worker: str) -> dict[str, int]:
    """running -> queued for everything `worker` still holds, at its shutdown.

    The interruption is the operator's doing, not the image's, so the attempt is given back.
    Returns the count per model, for publishing.
    """
    with sessions() as session:
        released = session.execute(
            update(Image)
            .where(Image.worker == worker, Image.status == ImageStatus.RUNNING)
            .values(_attempt_given_back())
            .returning(Image.model, Image.status, Image.job_id)
            .execution_options(synchronize_session=False)
        ).all()
        record_events(session, job_ids=[row.job_id for row in released if row.status != ImageStatus.QUEUED])
        session.commit()
    counts: dict[str, int] = {}
    for model, status, _job_id in released:
        if status == ImageStatus.QUEUED:
            counts[model] = counts.get(model, 0) + 1
    return counts


# -- the reaper --------------------------------------------------------------------------------


def reap(sessions: sessionmaker[Session], *, max_attempts: int, now: datetime | None = None) -> Reaped:
    """running -> queued (or failed at the cap) for every lease that expired: its worker died or hung.

    An item whose dead batch held others is marked to run alone, and that try is not counted: any
    one of them may have killed the worker, and a farm whose workers are killed from outside (an
    OOM killer, a preempted host) must not fail innocent batch-mates. Tries alone do count, so an
    item that kills its worker by itself fails after `max_attempts` of them.
    """
    now = now or utcnow()
    batch_mate = aliased(Image)
    in_a_batch = exists().where(batch_mate.lease_token == Image.lease_token, batch_mate.id != Image.id)
    attempts = case((in_a_batch, Image.attempts - 1), else_=Image.attempts)
    last_error = func.coalesce(Image.error, LOST_WORKER)
    gave_up = literal("gave up after ") + cast(attempts, String) + literal(" attempts; last: ") + last_error
    values = _back_to_queue(case((attempts >= max_attempts, gave_up), else_=last_error), now, max_attempts, attempts)
    values[Image.attempts] = attempts
    values[Image.run_alone] = or_(Image.run_alone, in_a_batch)
    with sessions() as session:
        rows = session.execute(
            update(Image)
            .where(
                Image.status == ImageStatus.RUNNING,
                or_(Image.lease_expires_at < now, Image.lease_expires_at.is_(None)),
            )
            .values(values)
            .returning(Image.id, Image.job_id, Image.index, Image.lease_token, Image.status)
            .execution_options(synchronize_session=False)
        ).all()
        record_events(session, image_ids=[row.id for row in rows if row.status != ImageStatus.QUEUED])
        session.commit()
    # A reaped row keeps its last lease token: it names the attempt whose files must be removed.
    failed = sum(1 for row in rows if row.status == ImageStatus.FAILED)
    attempts = [(row.job_id, row.index, row.lease_token) for row in rows if row.lease_token]
    return Reaped(requeued=len(rows) - failed, failed=failed, attempts=attempts)


# -- the API side --------------------------------------------------------------------------------


def cancel(sessions: sessionmaker[Session], *, job_id: int) -> int:
    """queued or running -> canceled for a whole job; returns how many images it stopped.

    Running batches notice at their next lease renewal (it finds nothing held) and stop;
    whatever they produce is discarded because `succeed` requires the row to be running.
    """
    now = utcnow()
    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.canceled_at.is_(None)).values(canceled_at=now))
        changed = session.execute(
            update(Image)
            .where(Image.job_id == job_id, Image.status.in_(LIVE))
            .values(status=ImageStatus.CANCELED, finished_at=now, lease_expires_at=None, progress=0.0)
            .execution_options(synchronize_session=False)
        ).rowcount
        record_events(session, job_ids=[job_id])
        session.commit()
        return changed


# -- messages ------------------------------------------------------------------------------------


def publish_work(queue: RenderQueue, *, model: str, images: int, max_batch: int) -> None:
    """Tell workers of `model` that `images` more are queued (one message per batch, capped)."""
    queue.publish_for_items(model, images, max_batch)


def continue_work(sessions: sessionmaker[Session], queue: RenderQueue, *, model: str) -> None:
    """After a claim: keep a message waiting while work for `model` remains.

    Every run consumed one message, even a run that lost every race for rows; without a
    replacement the chain would stall until the reaper's next pass. One waiting message is
    enough for the next idle worker: a worker renders batches back to back, so one per claim
    would leave a tail of runs with nothing to claim once the queue is empty.
    """
    if queue.depth(model) == 0 and any_queued(sessions, model=model):
        queue.publish(model)


def republish_lost(sessions: sessionmaker[Session], queue: RenderQueue, *, max_batch: int) -> dict[str, int]:
    """Publish for every model that has queued work but no message (a broker restart lost them)."""
    with sessions() as session:
        waiting = session.execute(
            select(Image.model, func.count())
            .where(Image.status == ImageStatus.QUEUED, _job_not_canceled())
            .group_by(Image.model)
        ).all()
    republished: dict[str, int] = {}
    for model, count in waiting:
        if queue.depth(model) == 0:
            publish_work(queue, model=model, images=count, max_batch=max_batch)
            republished[model] = count
    return republished


def any_queued(sessions: sessionmaker[Session], *, model: str) -> bool:
    """Whether any image of `model` waits to be claimed: one index probe, however long the queue."""
    with sessions() as session:
        first = select(Image.id).where(Image.model == model, Image.status == ImageStatus.QUEUED, _job_not_canceled())
        return session.scalar(first.order_by(Image.priority.desc(), Image.id).limit(1)) is not None
