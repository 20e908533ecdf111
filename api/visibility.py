"""What a caller sees of the farm beyond its own rows: other tenants' work and the server's file paths.

Admin keys, and every caller when auth is off, see the whole farm. Any other key sees its own jobs
only: a worker's current job only when it is one of the caller's, queue depths of its own images,
and file and folder names instead of absolute server paths (which tell an attacker the layout of
the machine: user names, mount points, where the weights live).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePath

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import owner_scope
from models.job import Job

# A POSIX path of at least two parts: its directories are hidden, its last part kept. Not after a
# word, a dot or a colon, so URLs (`http://host/a/b`) and relative paths (`a/b`) are left alone.
_DIRECTORIES = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`,;:()\[\]{}<>=]+/)+(?=[^\s/'\"`,;:()\[\]{}<>=])")
HIDDEN = ".../"


def full_view() -> bool:
    """Whether the caller sees the whole farm (an admin key, or auth off)."""
    return owner_scope() is None


def shown_path(path: str | PurePath) -> str:
    """A server path as the caller may see it: whole for the full view, else only its last part."""
    return str(path) if full_view() else PurePath(path).name


def hide_paths(text: str | None) -> str | None:
    """A message (a worker's error, say) with the directories of any absolute path it names hidden."""
    if text is None or full_view():
        return text
    return _DIRECTORIES.sub(HIDDEN, text)


def own_job_ids(session: Session, job_ids: Iterable[int | None]) -> set[int] | None:
    """Of these job ids, those the caller may see; None means all of them (the full view)."""
    scope = owner_scope()
    if scope is None:
        return None
    wanted = {job_id for job_id in job_ids if job_id is not None}
    if not wanted:
        return set()
    return set(session.scalars(select(Job.id).where(Job.id.in_(wanted), Job.owner_key_id == scope)))
