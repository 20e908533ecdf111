"""Which images an export takes: a list of ids, a job, or the gallery's filters, as one query.

Stored with an export as JSON and turned into SQL on the worker side, so a selection of 100,000
images travels as a few fields, never as a list of rows. Its filters are the gallery's
(models/image_query.py), so a filter selects the same images in an export as on the page. Read in
id order, a chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from models.image import Image
from models.image_query import ImageFilters, select_images

CHUNK = 500


@dataclass(frozen=True)
class ImageSelection:
    """What to export; every field that is set narrows the selection (all of them together).

    The names are the export API's (`job_id`, `board_id`, a `rating` number); `filters` turns them
    into the gallery's filters, which only ever take succeeded images that are not deleted.
    """

    image_ids: tuple[int, ...] = ()
    job_id: int | None = None
    board_id: int | None = None
    q: str = ""
    model: str = ""
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    rating: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as JSON values (dates as YYYY-MM-DD)."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value in (None, "", ()):
                continue
            out[name] = value.isoformat() if isinstance(value, date) else list(value) if name == "image_ids" else value
        return out

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ImageSelection:
        """The selection `to_json` wrote."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in document.items() if key in known}
        if "image_ids" in values:
            values["image_ids"] = tuple(int(value) for value in values["image_ids"])
        for name in ("date_from", "date_to"):
            if values.get(name):
                values[name] = date.fromisoformat(values[name])
        return cls(**values)

    def filters(self) -> ImageFilters:
        """The gallery's filters that select the same images (status succeeded, deleted ones left out)."""
        size = f"{self.width}x{self.height}" if self.width is not None and self.height is not None else ""
        return ImageFilters(
            q=self.q,
            job=self.job_id,
            model=self.model,
            size=size,
            seed=self.seed,
            date_from=self.date_from,
            date_to=self.date_to,
            rating="" if self.rating is None else str(self.rating),
            board=self.board_id,
        )

    def query(self, dialect_name: str, scope: int | None, upto: int | None = None) -> tuple[Select, ColumnElement[int]]:
        """Images that match and have a file, for owner `scope` (None: every owner), ids up to `upto`; and
        the column to order and page them by (equal to images.id)."""
        query, key = select_images(self.filters(), dialect_name, scope)
        query = query.where(Image.object_key.is_not(None))
        if upto is not None:
            query = query.where(key <= upto)
        if self.image_ids:
            query = query.where(Image.id.in_(self.image_ids))
        return query, key


def iter_selected(
    session: Session, selection: ImageSelection, scope: int | None, chunk: int = CHUNK, upto: int | None = None
) -> Iterator[Image]:
    """The selected images in id order, `chunk` rows per query (keyset paging: memory stays flat).

    Rows are detached from the session once a chunk is done, so a long export does not collect them all;
    give it a session of its own (the transaction is ended between chunks).
    """
    dialect = session.get_bind().dialect.name
    for part in _id_slices(selection, chunk):
        base, key = part.query(dialect, scope, upto)
        after = 0
        while True:
            rows = list(session.scalars(base.where(key > after).order_by(key).limit(chunk)))
            yield from rows
            # Forget the rows and end the read transaction: a long export holds neither memory nor a snapshot.
            session.expunge_all()
            session.rollback()
            if len(rows) < chunk:
                break
            after = rows[-1].id


def count_selected(session: Session, selection: ImageSelection, scope: int | None, upto: int | None = None) -> int:
    """How many images the selection takes now."""
    dialect = session.get_bind().dialect.name
    total = 0
    for part in _id_slices(selection, CHUNK):
        ids = part.query(dialect, scope, upto)[0].with_only_columns(Image.id).subquery()
        total += session.scalar(select(func.count()).select_from(ids)) or 0
    return total


def _id_slices(selection: ImageSelection, size: int) -> Iterator[ImageSelection]:
    """The selection itself, or (for a list of ids) one selection per `size` ids, so no IN list grows past it."""
    if not selection.image_ids:
        yield selection
        return
    ids = sorted(set(selection.image_ids))
    for start in range(0, len(ids), size):
        yield replace(selection, image_ids=tuple(ids[start : start + size]))
