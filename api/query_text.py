"""Query strings are text like any other input: names and values holding control characters are refused.

One check before every request, API and gallery alike, so no parameter (`?model=%00`, `?q=`, a
cursor, one added later) reaches a query that PostgreSQL would answer with an error.
"""

from __future__ import annotations

from flask import Flask, request

from api.errors import ApiError
from models.text import forbidden_character


def refuse_control_characters() -> None:
    """before_request: 422 naming the first query parameter whose name or value holds a control character."""
    for name, value in request.args.items(multi=True):
        problem = forbidden_character(name) or forbidden_character(value)
        if problem is not None:
            shown = name if forbidden_character(name) is None else repr(name)[1:-1][:100]
            raise ApiError(422, "invalid query parameter", [{"field": shown, "reason": f"contains {problem}"}])


def register_query_checks(app: Flask) -> None:
    """Run the check before each request."""
    app.before_request(refuse_control_characters)
