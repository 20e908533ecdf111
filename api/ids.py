"""The `<id:...>` URL converter: row ids as the database can hold them (1 to 2^63 - 1)."""

from __future__ import annotations

from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter

from models.base import MAX_ROW_ID

MAX_ID = MAX_ROW_ID


def parse_id(value: str | None) -> int | None:
    """A row id from a query string (ASCII digits, 1 to MAX_ID), or None for anything else."""
    if value and value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID)):
        number = int(value)
        if 1 <= number <= MAX_ID:
            return number
    return None


class IdConverter(BaseConverter):
    """Matches positive integers that fit a 64-bit column; anything larger is a plain 404."""

    regex = r"[1-9][0-9]{0,18}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            # Not werkzeug's ValidationError: with it, a URL served for other methods answers 405.
            raise NotFound(f"no row has the id {value}; ids end at {MAX_ID}")
        return number

    def to_url(self, value: int) -> str:
        return str(value)
