"""Databases for tests: a fresh PostgreSQL database per test or module.

Farm processes (`sdfarm api`, `sdfarm worker`) are started with `sdfarm.farm_processes`, which the
benchmarks share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sdfarm.farm_processes import REPO
from sdfarm.scratch_database import scratch_database

__all__ = ["POSTGRES_ENV", "REPO", "fresh_postgres_database", "postgres_admin_url"]

POSTGRES_ENV = "SDFARM_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    """The PostgreSQL server tests may create databases on (set by .ci/run), or None."""
    return os.environ.get(POSTGRES_ENV)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (module), dropped afterwards."""
    admin = postgres_admin_url()
    assert admin, f"{POSTGRES_ENV} is not set"
    with scratch_database(admin, prefix="sdfarm_test") as url:
        yield url
