"""Which images a view or an action covers: the gallery's search and filters, read from a URL's query
string (so views can be shared) or a JSON object, and turned into one query.

The gallery's pages, the JSON API's list, bulk curation and exports all select images through
`select_images`, so a filter means the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, func, select

from models.board import Board, BoardImage
from models.image import Image, ImageStatus
from models.prompt_search import search_for_dialect
from models.spec import MAX_SEED

DEFAULT_STATUS = ImageStatus.SUCCEEDED.value
ANY_STATUS = "any"
STATUS_CHOICES = (DEFAULT_STATUS, ANY_STATUS, *(s.value for s in ImageStatus if s != ImageStatus.SUCCEEDED))
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*$")
MAX_QUERY_CHARS = 200
# rating=1, 0 or -1 is that rating; not-rejected is 1 or 0.
NOT_REJECTED = "not-rejected"
RATING_CHOICES = ("1", "0", "-1", NOT_REJECTED)
# deleted=only shows the deleted images still in their grace period (the trash), instead of the others.
DELETED_CHOICES = ("only",)
# Every parameter name, as in the gallery's URL and in a bulk action's or an export's JSON `query`.
PARAMETERS = ("q", "job", "model", "size", "seed", "status", "from", "to", "rating", "board", "deleted")
# Ids grow with queued_at except between writers whose clocks or transactions differ by less than this;
# the date filter turns into id bounds with this much slack (see ImageFilters.apply).
ID_CLOCK_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class FilterError:
    """A filter value that could not be used, and why."""

    field: str
    reason: str


@dataclass(frozen=True)
class ImageFilters:
    """Which images to show or act on; every field has a URL parameter of the same name (dates: from, to)."""

    q: str = ""
    job: int | None = None
    model: str = ""
    size: str = ""
    seed: int | None = None
    status: str = DEFAULT_STATUS
    date_from: date | None = None
    date_to: date | None = None
    rating: str = ""
    board: int | None = None
    deleted: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, object]) -> tuple[ImageFilters, list[FilterError]]:
        """Parse a query string (or a JSON object of the same names); bad values are dropped and reported."""
        values: dict[str, object] = {}
        args, errors = _scalars(args)
        q = (args.get("q") or "").strip()
        if len(q) > MAX_QUERY_CHARS:
            errors.append(FilterError("q", f"at most {MAX_QUERY_CHARS} characters"))
        else:
            values["q"] = q
        values["job"] = _integer(args, "job", 1, 2**63 - 1, errors)
        values["seed"] = _integer(args, "seed", 0, MAX_SEED, errors)
        values["model"] = (args.get("model") or "").strip()[:200]
        size = (args.get("size") or "").strip()
        if size and not _SIZE.match(size):
            errors.append(FilterError("size", "write it as WIDTHxHEIGHT, such as 512x512"))
        elif size:
            width, height = _SIZE.match(size).groups()
            values["size"] = f"{int(width)}x{int(height)}"
        status = (args.get("status") or DEFAULT_STATUS).strip()
        if status not in STATUS_CHOICES:
            errors.append(FilterError("status", f"one of {', '.join(STATUS_CHOICES)}"))
        else:
            values["status"] = status
        values["date_from"] = _date(args, "from", errors)
        values["date_to"] = _date(args, "to", errors)
        values["board"] = _integer(args, "board", 1, 2**63 - 1, errors)
        rating = (args.get("rating") or "").strip()
        if rating and rating not in RATING_CHOICES:
            errors.append(FilterError("rating", f"one of {', '.join(RATING_CHOICES)}"))
        else:
            values["rating"] = rating
        deleted = (args.get("deleted") or "").strip()
        if deleted and deleted not in DELETED_CHOICES:
            errors.append(FilterError("deleted", "only (deleted images still restorable), or leave it out"))
        else:
            values["deleted"] = deleted
        return cls(**values), errors

    def to_args(self) -> dict[str, str]:
        """The URL parameters of this view, defaults left out so links stay short."""
        args: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value in (None, "") or (item.name == "status" and value == DEFAULT_STATUS):
                continue
            name = {"date_from": "from", "date_to": "to"}.get(item.name, item.name)
            args[name] = value.isoformat() if isinstance(value, date) else str(value)
        return args

    @property
    def active(self) -> bool:
        """Whether anything narrows the view."""
        return bool(self.to_args())

    def apply(self, query: Select) -> Select:
        """`query` (over images) narrowed by every filter but the text search and the board (see select_images)."""
        if self.job is not None:
            # The id bounds (read from the job's own index) let SQLite's newest-first scan start and
            # stop at the job's rows instead of walking every newer image; job_id still decides.
            # "id + 0" keeps PostgreSQL from answering min/max by walking the primary key instead.
            first = select(func.min(Image.id + 0)).where(Image.job_id == self.job).scalar_subquery()
            last = select(func.max(Image.id + 0)).where(Image.job_id == self.job).scalar_subquery()
            query = query.where(Image.job_id == self.job, Image.id >= first, Image.id <= last)
        if self.model:
            query = query.where(Image.model == self.model)
        if self.size:
            width, height = (int(side) for side in self.size.split("x"))
            query = query.where(Image.width == width, Image.height == height)
        if self.seed is not None:
            query = query.where(Image.seed == self.seed)
        if self.status != ANY_STATUS:
            query = query.where(Image.status == self.status)
        if self.rating == NOT_REJECTED:
            query = query.where(Image.rating >= 0)
        elif self.rating:
            query = query.where(Image.rating == int(self.rating))
        if self.deleted == "only":
            # The trash is small: id bounds from ix_images_deleted_at keep the newest-first scan to the
            # deleted rows' id range instead of the whole table (as for the job filter).
            deleted = Image.deleted_at.is_not(None)
            first = select(func.min(Image.id + 0)).where(deleted).scalar_subquery()
            last = select(func.max(Image.id + 0)).where(deleted).scalar_subquery()
            query = query.where(deleted, Image.id >= first, Image.id <= last)
        else:
            query = query.where(Image.deleted_at.is_(None))
        # Dates are whole UTC days, both ends included, on when the image was queued.
        if self.date_from is not None and self.date_from > date.min:
            start = datetime.combine(self.date_from, time(), UTC)
            # Id bounds from one probe of the queued_at index each, as for the job filter: the
            # newest-first scan then starts and stops at the day's rows instead of walking every newer
            # (or older) image first. queued_at still decides; the slack keeps the bound below every
            # row of the day even where ids and clocks disagree a little.
            below = (
                select(Image.id)
                .where(Image.queued_at < start - ID_CLOCK_SLACK)
                .order_by(Image.queued_at.desc())
                .limit(1)
                .scalar_subquery()
            )
            query = query.where(Image.queued_at >= start, Image.id > func.coalesce(below, 0))
        if self.date_to is not None and self.date_to < date.max:
            end = datetime.combine(self.date_to + timedelta(days=1), time(), UTC)
            above = (
                select(Image.id)
                .where(Image.queued_at >= end + ID_CLOCK_SLACK)
                .order_by(Image.queued_at.asc())
                .limit(1)
                .scalar_subquery()
            )
            query = query.where(Image.queued_at < end, Image.id < func.coalesce(above, 2**63 - 1))
        return query


def select_images(
    filters: ImageFilters, dialect_name: str, scope: int | None, base: Select | None = None
) -> tuple[Select, ColumnElement[int]]:
    """The images `filters` select that owner `scope` may see (None: every owner's), and the column to
    order and page them by (equal to images.id).

    `base` is the select to narrow (default: whole Image rows; `select(Image.id)` for set-based
    actions). No ORDER BY or LIMIT is added.
    """
    query = filters.apply(select(Image) if base is None else base)
    if scope is not None:
        query = query.where(Image.owner_key_id == scope)
    key: ColumnElement[int] = Image.id
    if filters.board is not None:
        # A join on the board's primary key (board_id, image_id), paged by its image_id: a board's page
        # reads only that board's entries, however many images the farm holds.
        on_board = (BoardImage.image_id == Image.id) & (BoardImage.board_id == filters.board)
        query = query.join(BoardImage, on_board)
        if scope is not None:
            query = query.where(
                BoardImage.board_id.in_(select(Board.id).where(Board.id == filters.board, Board.owner_key_id == scope))
            )
        key = BoardImage.image_id
    query, search_key = search_for_dialect(dialect_name).apply(query, filters.q)
    if filters.q and search_key is not Image.id:
        key = search_key
    return query, key


def _scalars(args: Mapping[str, object]) -> tuple[dict[str, str], list[FilterError]]:
    # JSON bodies may hold numbers (or null) where a query string holds digits; anything else is refused.
    values: dict[str, str] = {}
    errors: list[FilterError] = []
    for name, value in args.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            errors.append(FilterError(str(name)[:40], "a string or a whole number"))
        else:
            values[name] = str(value)
    return values, errors


def _integer(args: Mapping[str, str], name: str, low: int, high: int, errors: list[FilterError]) -> int | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20) or not low <= int(value) <= high:
        errors.append(FilterError(name, f"a whole number from {low} to {high}"))
        return None
    return int(value)


def _date(args: Mapping[str, str], name: str, errors: list[FilterError]) -> date | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(FilterError(name, "a date as YYYY-MM-DD"))
        return None
