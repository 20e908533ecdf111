"""The gallery's prompt search; it lives in models/prompt_search.py so exports on the worker side use it too."""

from models.prompt_search import (  # noqa: F401 - re-exported for the gallery's modules
    MAX_WORDS,
    PostgresSearch,
    PromptSearch,
    SqliteFtsSearch,
    query_words,
    search_for_dialect,
)
