"""Curation: ratings, boards and deletes, on a list of ids or on a whole query, as set-based statements.

Every action is one UPDATE, INSERT ... SELECT or DELETE over the ids a selection names, so acting on
100,000 images never loads them. A delete is soft: `deleted_at` hides the images everywhere and
`deletion_id` lets "undo" restore exactly that action's images; `purge_deleted` (run beside the
workers) later removes the rows and then their files. None of this touches an image's status, which
belongs to models/lifecycle.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Select, delete, func, literal, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.board import BoardImage
from models.image import FINAL_STATUSES, Image
from models.image_query import ImageFilters, select_images
from models.image_store import ImageStore
from models.job import Job

RATINGS = (-1, 0, 1)
MAX_IDS = 10_000  # ids in one request; larger sets go by query
PURGE_BATCH = 500


@dataclass(frozen=True)
class Selection:
    """Which images an action covers: explicit `image_ids`, or every image `filters` match; always
    within owner `scope` (None: every owner's, for admins and farms without keys)."""

    scope: int | None
    image_ids: tuple[int, ...] | None = None
    filters: ImageFilters | None = None


def selected_ids(session: Session, selection: Selection, *, deleted: bool = False) -> Select:
    """`SELECT images.id` of the selection's images: live ones, or with `deleted` the deleted ones."""
    if selection.filters is not None:
        filters = dataclasses.replace(selection.filters, deleted="only" if deleted else "")
        query, _key = select_images(filters, session.get_bind().dialect.name, selection.scope, select(Image.id))
        return query
    query = select(Image.id).where(Image.id.in_(selection.image_ids or ()))
    query = query.where(Image.deleted_at.is_not(None) if deleted else Image.deleted_at.is_(None))
    if selection.scope is not None:
        query = query.where(Image.owner_key_id == selection.scope)
    return query


def rate(session: Session, selection: Selection, rating: int) -> int:
    """Set the rating (1 star, 0 none, -1 reject) of the selected images; how many matched."""
    if rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}")
    statement = update(Image).where(Image.id.in_(selected_ids(session, selection))).values(rating=rating)
    count = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
    session.commit()
    return count


def add_to_board(session: Session, selection: Selection, board_id: int) -> int:
    """Put the selected images on a board (those already there stay as they are); how many were added."""
    ids = selected_ids(session, selection).subquery()
    # WHERE true: SQLite cannot otherwise tell an INSERT ... SELECT's ON CONFLICT from a join's ON.
    rows = select(literal(board_id), ids.c.id, literal(utcnow(), BoardImage.added_at.type)).where(true())
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # ON CONFLICT DO NOTHING: adding twice, or two requests racing, leaves one entry and no error.
    statement = (
        insert(BoardImage)
        .from_select(["board_id", "image_id", "added_at"], rows)
        .on_conflict_do_nothing(index_elements=["board_id", "image_id"])
    )
    # SQLAlchemy reports an INSERT's row count only when asked to keep it.
    count = session.execute(statement, execution_options={"preserve_rowcount": True}).rowcount
    session.commit()
    return max(count, 0)


def remove_from_board(session: Session, selection: Selection, board_id: int) -> int:
    """Take the selected images off a board; how many were on it."""
    statement = delete(BoardImage).where(
        BoardImage.board_id == board_id, BoardImage.image_id.in_(selected_ids(session, selection))
    )
    count = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
    session.commit()
    return count


def soft_delete(session: Session, selection: Selection) -> tuple[int, str]:
    """Hide the selected finished images until the purge; how many, and the id that undoes it.

    Queued and running images are left alone: they are still the lifecycle's to finish or cancel.
    """
    deletion_id = uuid.uuid4().hex
    statement = (
        update(Image)
        .where(Image.id.in_(selected_ids(session, selection)), Image.status.in_(FINAL_STATUSES))
        .values(deleted_at=utcnow(), deletion_id=deletion_id)
    )
    count = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
    session.commit()
    return count, deletion_id


def restore(session: Session, selection: Selection | None = None, deletion_id: str | None = None) -> int:
    """Undo deletes not yet purged: those of one delete action (`deletion_id`, within the selection's
    scope) or the selected deleted images; how many came back."""
    if deletion_id is not None:
        where = [Image.deletion_id == deletion_id, Image.deleted_at.is_not(None)]
        if selection is not None and selection.scope is not None:
            where.append(Image.owner_key_id == selection.scope)
    elif selection is not None:
        where = [Image.id.in_(selected_ids(session, selection, deleted=True))]
    else:
        raise ValueError("restore needs a selection or a deletion id")
    statement = update(Image).where(*where).values(deleted_at=None, deletion_id=None)
    count = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
    session.commit()
    return count


def image_boards(session: Session, image_ids: Sequence[int]) -> dict[int, list[int]]:
    """The board ids each image is on."""
    boards: dict[int, list[int]] = {image_id: [] for image_id in image_ids}
    rows = session.execute(
        select(BoardImage.image_id, BoardImage.board_id)
        .where(BoardImage.image_id.in_(list(image_ids)))
        .order_by(BoardImage.board_id)
    )
    for image_id, board_id in rows:
        boards[image_id].append(board_id)
    return boards


def board_counts(session: Session, board_ids: Sequence[int]) -> dict[int, int]:
    """How many live (not deleted) images each board holds."""
    rows = session.execute(
        select(BoardImage.board_id, func.count())
        .join(Image, Image.id == BoardImage.image_id)
        .where(BoardImage.board_id.in_(list(board_ids)), Image.deleted_at.is_(None))
        .group_by(BoardImage.board_id)
    )
    counts = {board_id: 0 for board_id in board_ids}
    counts.update({board_id: count for board_id, count in rows})
    return counts


def purge_deleted(sessions: sessionmaker[Session], store: ImageStore, *, grace_seconds: float) -> int:
    """Remove images deleted more than `grace_seconds` ago: rows first, then their files; how many rows.

    At most PURGE_BATCH rows per call, so one pass never holds the database for long. A row restored
    meanwhile no longer matches the conditional DELETE and keeps its files. A file that a job still
    reads as its init image or mask stays. A crash between the two steps leaves orphan files, never a
    row without its file.
    """
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Image.id).where(Image.deleted_at < cutoff).order_by(Image.deleted_at).limit(PURGE_BATCH)
            )
        )
        if not ids:
            return 0
        rows = session.execute(
            delete(Image)
            .where(Image.id.in_(ids), Image.deleted_at < cutoff)
            .returning(Image.object_key, Image.thumb_key),
            execution_options={"synchronize_session": False},
        ).all()
        session.commit()
        keys = {key for row in rows for key in row if key}
        if keys:
            in_use = session.execute(
                select(Job.init_image_key, Job.mask_image_key).where(
                    or_(Job.init_image_key.in_(keys), Job.mask_image_key.in_(keys))
                )
            ).all()
            keys -= {key for row in in_use for key in row}
    for key in sorted(keys):
        store.delete(key)
    return len(rows)
