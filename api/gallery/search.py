"""Prompt search behind one interface: SQLite FTS5 or PostgreSQL full text, chosen by dialect.

Both match whole words, ignoring case, and need every word of the query (see migration 0002
for the index each one uses).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from sqlalchemy import ColumnElement, Select, func, literal_column, select, table, text

from models.image import Image

# Letters and digits only: underscores and punctuation separate words in both indexes, and user
# text never reaches a query language (FTS5 syntax, tsquery operators) unquoted.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 16


def query_words(query: str) -> list[str]:
    """The words of a search query, in order, at most MAX_WORDS."""
    return _WORD.findall(query)[:MAX_WORDS]


class PromptSearch(ABC):
    """Restricts an images query to rows whose prompt contains every word of a search text."""

    @abstractmethod
    def condition(self, words: list[str]) -> ColumnElement[bool]:
        """A WHERE clause on `images` that is true for prompts containing all `words` (non-empty)."""

    def apply(self, query: Select, search_text: str) -> Select:
        """`query` narrowed to matching prompts; unchanged when the text has no words."""
        words = query_words(search_text)
        if not words:
            return query
        return query.where(self.condition(words))


class SqliteFtsSearch(PromptSearch):
    """The FTS5 external-content table `images_fts`, kept in step with images by triggers."""

    _fts = table("images_fts", literal_column("rowid"))

    @staticmethod
    def match_expression(words: list[str]) -> str:
        """An FTS5 query: each word a quoted string (no operators), all of them required."""
        return " ".join('"' + word.replace('"', '""') + '"' for word in words)

    def condition(self, words: list[str]) -> ColumnElement[bool]:
        """images.id among the FTS rowids that match."""
        matches = (
            select(literal_column("images_fts.rowid"))
            .select_from(self._fts)
            .where(text("images_fts MATCH :fts_query").bindparams(fts_query=self.match_expression(words)))
        )
        return Image.id.in_(matches)


class PostgresSearch(PromptSearch):
    """A GIN index on to_tsvector('simple', prompt) (ix_images_prompt_search)."""

    def condition(self, words: list[str]) -> ColumnElement[bool]:
        """to_tsvector(...) @@ plainto_tsquery(...), spelled as the index is so the planner uses it."""
        # The configuration must be a literal, not a bound parameter, to match the index expression.
        config = literal_column("'simple'")
        vector = func.to_tsvector(config, Image.prompt)
        return vector.op("@@", is_comparison=True)(func.plainto_tsquery(config, " ".join(words)))


def search_for_dialect(dialect_name: str) -> PromptSearch:
    """The search implementation for a SQLAlchemy dialect name."""
    if dialect_name == "sqlite":
        return SqliteFtsSearch()
    if dialect_name == "postgresql":
        return PostgresSearch()
    raise ValueError(f"no prompt search for the {dialect_name!r} database; sdfarm supports SQLite and PostgreSQL")
