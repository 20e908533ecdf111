"""The gallery's search and filters: read from the URL (so views can be shared) and applied to a query."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, select

from models.image import Image, ImageStatus
from models.spec import MAX_SEED

DEFAULT_STATUS = ImageStatus.SUCCEEDED.value
ANY_STATUS = "any"
STATUS_CHOICES = (DEFAULT_STATUS, ANY_STATUS, *(s.value for s in ImageStatus if s != ImageStatus.SUCCEEDED))
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*$")
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class FilterError:
    """A filter value that could not be used, and why."""

    field: str
    reason: str


@dataclass(frozen=True)
class GalleryFilters:
    """What the gallery shows; every field has a URL parameter of the same name (dates: from, to)."""

    q: str = ""
    job: int | None = None
    model: str = ""
    size: str = ""
    seed: int | None = None
    status: str = DEFAULT_STATUS
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> tuple[GalleryFilters, list[FilterError]]:
        """Parse the query string; bad values are dropped and reported, never raised."""
        errors: list[FilterError] = []
        values: dict[str, object] = {}
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
        """`query` (over images) narrowed by every filter but the text search (see PromptSearch)."""
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
        # Dates are whole UTC days, both ends included, on when the image was queued.
        if self.date_from is not None:
            query = query.where(Image.queued_at >= datetime.combine(self.date_from, time(), UTC))
        if self.date_to is not None and self.date_to < date.max:
            query = query.where(Image.queued_at < datetime.combine(self.date_to + timedelta(days=1), time(), UTC))
        return query


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
