"""Which images an export takes: a list of ids, a job, or the gallery's filters, as one query.

Stored with an export as JSON and turned into SQL on the worker side, so a selection of 100,000
images travels as a few fields, never as a list of rows. Read in id order, a chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models.image import Image, ImageStatus
from models.prompt_search import search_for_dialect

CHUNK = 500
# Selection fields that are stored but not applied until the curation tables (ratings, boards) are
# wired into `narrow_by_curation`; the API refuses them meanwhile rather than export too much.
NOT_YET_APPLIED = ("rating", "board_id")


@dataclass(frozen=True)
class ImageSelection:
    """What to export; every field that is set narrows the selection (all of them together).

    `rating` and `board_id` are the curation filters (ratings and boards); they are stored and
    passed through here, and `narrow` applies them where the curation tables exist.
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

    def query(self, dialect_name: str, scope: int | None, upto: int | None = None) -> Select:
        """Succeeded images (with a file) that match, for owner `scope` (None: every owner), ids up to `upto`."""
        query = select(Image).where(Image.status == ImageStatus.SUCCEEDED, Image.object_key.is_not(None))
        if upto is not None:
            query = query.where(Image.id <= upto)
        if scope is not None:
            query = query.where(Image.owner_key_id == scope)
        if self.image_ids:
            query = query.where(Image.id.in_(self.image_ids))
        if self.job_id is not None:
            query = query.where(Image.job_id == self.job_id)
        if self.model:
            query = query.where(Image.model == self.model)
        if self.width is not None:
            query = query.where(Image.width == self.width)
        if self.height is not None:
            query = query.where(Image.height == self.height)
        if self.seed is not None:
            query = query.where(Image.seed == self.seed)
        # Dates are whole UTC days, both ends included, on when the image was queued (as in the gallery).
        if self.date_from is not None:
            query = query.where(Image.queued_at >= datetime.combine(self.date_from, time(), UTC))
        if self.date_to is not None and self.date_to < date.max:
            query = query.where(Image.queued_at < datetime.combine(self.date_to + timedelta(days=1), time(), UTC))
        query = narrow_by_curation(query, self)
        query, _key = search_for_dialect(dialect_name).apply(query, self.q)
        return query


def narrow_by_curation(query: Select, selection: ImageSelection) -> Select:
    """Rating and board filters: a hook for the curation tables (ratings, boards), which live on their own branch.

    Until they are wired in, a selection that names a rating or a board is refused at submit
    (NOT_YET_APPLIED, checked in api/exports.py), so nothing here silently exports more than was asked for.
    """
    return query


def iter_selected(
    session: Session, selection: ImageSelection, scope: int | None, chunk: int = CHUNK, upto: int | None = None
) -> Iterator[Image]:
    """The selected images in id order, `chunk` rows per query (keyset paging: memory stays flat).

    Rows are detached from the session once a chunk is done, so a long export does not collect them all.
    """
    dialect = session.get_bind().dialect.name
    for part in _id_slices(selection, chunk):
        base = part.query(dialect, scope, upto)
        after = 0
        while True:
            rows = list(session.scalars(base.where(Image.id > after).order_by(Image.id).limit(chunk)))
            yield from rows
            session.expunge_all()
            if len(rows) < chunk:
                break
            after = rows[-1].id


def count_selected(session: Session, selection: ImageSelection, scope: int | None, upto: int | None = None) -> int:
    """How many images the selection takes now."""
    dialect = session.get_bind().dialect.name
    total = 0
    for part in _id_slices(selection, CHUNK):
        ids = part.query(dialect, scope, upto).with_only_columns(Image.id).subquery()
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
