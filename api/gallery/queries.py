"""Keyset-paginated reads for the gallery pages: newest first by id, as fast on page 1 as on page 20,000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.ids import parse_id
from models.image import Image
from models.image_query import ImageFilters, select_images
from models.job import Job

Row = TypeVar("Row", Image, Job)
PAGE_SIZE = 48  # divides evenly into rows of 2, 3, 4, 6 and 8 thumbnails


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: below `before` (older) or above `after` (newer); neither is the first page."""

    before: int | None = None
    after: int | None = None

    @classmethod
    def from_args(cls, args) -> Cursor:
        """Read `before` / `after` from the query string; anything but a plain id means the first page."""
        return cls(before=parse_id(args.get("before")), after=parse_id(args.get("after")))


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of rows, newest first, and the cursors of its neighbours (None where there is none)."""

    rows: list[Row]
    older: int | None
    newer: int | None


def keyset_page(session: Session, query: Select, id_column, cursor: Cursor, size: int = PAGE_SIZE) -> Page:
    """Run `query` (no ORDER BY or LIMIT yet) one page at a time on `id_column`.

    One extra row is fetched to learn whether another page follows, so no COUNT is ever needed.
    """
    if cursor.after is not None:
        rows = list(session.scalars(query.where(id_column > cursor.after).order_by(id_column.asc()).limit(size + 1)))
        if not rows:  # nothing newer any more: show the newest page instead of an empty one
            return keyset_page(session, query, id_column, Cursor(), size)
        newer_exists = len(rows) > size
        rows = rows[:size][::-1]
        older = rows[-1].id
        if session.scalar(query.where(id_column < older).limit(1)) is None:
            older = None
        return Page(rows, older=older, newer=rows[0].id if newer_exists else None)
    paged = query if cursor.before is None else query.where(id_column < cursor.before)
    rows = list(session.scalars(paged.order_by(id_column.desc()).limit(size + 1)))
    older = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    # Arriving with `before` means a newer page was shown; its rows may since have been deleted,
    # which costs one empty "newer" page at worst.
    newer = rows[0].id if cursor.before is not None and rows else None
    return Page(rows, older=older, newer=newer)


def gallery_images(session: Session, filters: ImageFilters, scope: int | None, cursor: Cursor) -> Page[Image]:
    """The images a gallery page shows; `scope` is the owner key id to keep to (None: all owners)."""
    query, key = select_images(filters, session.get_bind().dialect.name, scope)
    return keyset_page(session, query, key, cursor)


def neighbours(
    session: Session, filters: ImageFilters, scope: int | None, image_id: int
) -> tuple[int | None, int | None]:
    """The ids shown just before (newer) and after (older) `image_id` in the gallery view `filters`."""
    query, key = select_images(filters, session.get_bind().dialect.name, scope, select(Image.id))
    newer = session.scalar(query.where(key > image_id).order_by(key.asc()).limit(1))
    older = session.scalar(query.where(key < image_id).order_by(key.desc()).limit(1))
    return newer, older


def job_list(session: Session, scope: int | None, cursor: Cursor, size: int = 20) -> Page[Job]:
    """Jobs, newest first, that the caller may see."""
    query = select(Job)
    if scope is not None:
        query = query.where(Job.owner_key_id == scope)
    return keyset_page(session, query, Job.id, cursor, size)
