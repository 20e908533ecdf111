"""A scratch PostgreSQL database for a test or a benchmark run, created on the given server and dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def scratch_database(server_url: str | None, prefix: str = "sdfarm_bench") -> Iterator[str | None]:
    """Yield a fresh database URL on `server_url`'s server (None, i.e. SQLite, passes through)."""
    if not server_url or not server_url.startswith("postgresql"):
        yield server_url
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conninfo = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
