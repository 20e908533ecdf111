"""Text that clients send: only characters both databases store and every page shows as text.

PostgreSQL cannot store NUL in a text column (a NUL in a prompt once gave 500 there, and was
stored on SQLite); unpaired surrogates cannot be encoded as UTF-8 by either driver; other
control characters hide text in the gallery and in logs. Prompts may keep tabs and line breaks.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# C0 and C1 controls and DEL (Unicode's "Cc"), and surrogates ("Cs"); one character class, no backtracking.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_IN_PROMPTS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def forbidden_character(value: str, multiline: bool = False) -> str | None:
    """A description of the first character `value` must not hold, or None when it is clean."""
    found = (_FORBIDDEN_IN_PROMPTS if multiline else _FORBIDDEN).search(value)
    if found is None:
        return None
    code = ord(found.group())
    kind = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return f"{kind} (U+{code:04X}) at position {found.start()}"


def _check(value: str, multiline: bool) -> str:
    problem = forbidden_character(value, multiline)
    if problem is not None:
        allowed = "; only tabs and line breaks are allowed" if multiline else ""
        raise ValueError(f"contains {problem}{allowed}")
    return value


def prompt_text(value: str) -> str:
    """Pydantic check of a prompt: tabs and line breaks allowed, other control characters not."""
    return _check(value, multiline=True)


def single_line_text(value: str) -> str:
    """Pydantic check of a name, URL or other one-line value: no control characters at all."""
    return _check(value, multiline=False)


def single_line_type(max_length: int) -> type[str]:
    """The type of a one-line string (a name, a URL) of at most `max_length` characters, for pydantic."""
    return Annotated[str, StringConstraints(max_length=max_length), AfterValidator(single_line_text)]  # type: ignore[return-value]


def prompt_type(max_length: int, **constraints) -> type[str]:
    """The type of a prompt (tabs and line breaks allowed) of at most `max_length` characters, for pydantic."""
    bounds = StringConstraints(max_length=max_length, **constraints)
    return Annotated[str, bounds, AfterValidator(prompt_text)]  # type: ignore[return-value]
