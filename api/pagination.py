"""Keyset (cursor) pagination: newest first by id, stable and fast at any depth."""

from __future__ import annotations

from flask import request

from api.errors import ApiError
from api.ids import parse_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def page_args() -> tuple[int, int | None]:
    """`limit` (1..500) and `cursor` (the id to continue below) from the query string."""
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ApiError(400, "limit must be an integer", [{"field": "limit", "reason": "not an integer"}]) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1..{MAX_LIMIT}", [{"field": "limit", "reason": f"must be 1..{MAX_LIMIT}"}])
    cursor = request.args.get("cursor")
    if cursor is None or cursor == "":
        return limit, None
    number = parse_id(cursor)
    if number is None:
        raise ApiError(
            400, "cursor must be a next_cursor value from a previous page", [{"field": "cursor", "reason": "invalid"}]
        )
    return limit, number


def next_cursor(ids: list[int], limit: int) -> str | None:
    """The cursor of the following page, or None on the last page."""
    return str(ids[-1]) if len(ids) == limit else None
