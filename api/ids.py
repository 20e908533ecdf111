"""The `<id:...>` URL converter: row ids as the database can hold them (1 to 18 digits)."""

from __future__ import annotations

from werkzeug.routing import BaseConverter

MAX_ID = 10**18 - 1


class IdConverter(BaseConverter):
    """Matches positive integers that fit a 64-bit column; anything longer is a plain 404."""

    regex = r"[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
