"""Prompt search behind one interface: SQLite FTS5 or PostgreSQL full text, chosen by dialect.

Both match whole words, ignoring case, and need every word of the query (see migration 0002
for the index each one uses).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from sqlalchemy import ColumnElement, Integer, Select, column, func, literal_column, table, text

from models.image import Image

# Letters and digits only: underscores and punctuation separate words in both indexes, and user
# text never reaches a query language (FTS5 syntax, tsquery operators) unquoted.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 16


def query_words(query: str) -> list[str]:
    """The words of a search query, in order, at most MAX_WORDS."""
    return _WORD.findall(query)[:MAX_WORDS]


class PromptSearch(ABC):
    """Narrows an images query to rows whose prompt contains every word of a search text."""

    def apply(self, query: Select, search_text: str) -> tuple[Select, ColumnElement[int]]:
        """`query` narrowed to matching prompts, and the column to order and page it by (equal to images.id).

        A text without words leaves the query as it is, paged by images.id.
        """
        words = query_words(search_text)
        if not words:
            return query, Image.id
        return self.narrow(query, words)

    @abstractmethod
    def narrow(self, query: Select, words: list[str]) -> tuple[Select, ColumnElement[int]]:
        """`query` restricted to prompts containing all `words` (non-empty), and its paging column."""


class SqliteFtsSearch(PromptSearch):
    """The FTS5 external-content table `images_fts`, kept in step with images by triggers."""

    _fts = table("images_fts", column("rowid", Integer))

    @staticmethod
    def match_expression(words: list[str]) -> str:
        """An FTS5 query: each word a quoted string (no operators), all of them required."""
        return " ".join('"' + word.replace('"', '""') + '"' for word in words)

    def narrow(self, query: Select, words: list[str]) -> tuple[Select, ColumnElement[int]]:
        """Join the FTS table and page by its rowid.

        FTS5 yields matches in rowid order and applies rowid bounds itself, so a page reads only the
        matches it shows (and those other filters drop). Filtering images by an IN list of matches
        instead collects and sorts every match first: 0.9 s for a word in every prompt of a million.
        """
        match = text("images_fts MATCH :fts_query").bindparams(fts_query=self.match_expression(words))
        joined = query.join(self._fts, self._fts.c.rowid == Image.id).where(match)
        return joined, self._fts.c.rowid


class PostgresSearch(PromptSearch):
    """A GIN index on to_tsvector('simple', prompt) (ix_images_prompt_search)."""

    def narrow(self, query: Select, words: list[str]) -> tuple[Select, ColumnElement[int]]:
        """to_tsvector(...) @@ plainto_tsquery(...), spelled as the index is so the planner can use it."""
        # The configuration must be a literal, not a bound parameter, to match the index expression.
        config = literal_column("'simple'")
        vector = func.to_tsvector(config, Image.prompt)
        matches = vector.op("@@", is_comparison=True)(func.plainto_tsquery(config, " ".join(words)))
        return query.where(matches), Image.id


def search_for_dialect(dialect_name: str) -> PromptSearch:
    """The search implementation for a SQLAlchemy dialect name."""
    if dialect_name == "sqlite":
        return SqliteFtsSearch()
    if dialect_name == "postgresql":
        return PostgresSearch()
    raise ValueError(f"no prompt search for the {dialect_name!r} database; sdfarm supports SQLite and PostgreSQL")
