"""Checks a worker host makes before it joins the farm: the store works and its worker names are free.

A GPU host shares only three URLs with the farm (database, Redis, object store), so these checks
are what turn a typo in one of them, or two machines with the same name, into one clear message
at start instead of images that fail later or workers that overwrite each other's heartbeats.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.image_store import ImageStore
from models.settings import Settings
from models.urls import mask_url
from models.worker_record import WorkerRecord

log = logging.getLogger("sdfarm.supervisor")


class NameInUseError(RuntimeError):
    """Another live worker already carries one of the names this host would use."""


def log_farm_urls(settings: Settings, store: ImageStore) -> None:
    """Say which farm this host joins, with every password masked."""
    log.info(
        "joining the farm as host %s: database %s, redis %s, object store %s",
        settings.resolved_host_name,
        mask_url(settings.resolved_database_url),
        mask_url(settings.redis_url),
        store.describe(),
    )


def check_names_free(sessions: sessionmaker[Session], names: list[str], offline_seconds: float) -> None:
    """Raise NameInUseError if a worker named like one of ours has beaten recently and not stopped."""
    since = utcnow() - timedelta(seconds=offline_seconds)
    with sessions() as session:
        live = list(
            session.scalars(
                select(WorkerRecord).where(
                    WorkerRecord.name.in_(names), WorkerRecord.last_seen >= since, WorkerRecord.state != "stopped"
                )
            )
        )
    if live:
        taken = ", ".join(f"{r.name} (pid {r.pid} on {r.host}, last seen {_ago(r)} ago)" for r in live)
        raise NameInUseError(
            f"worker name already in use by a live worker: {taken}. Give this machine its own name with "
            f"--host-name or SDFARM_HOST_NAME (or wait {offline_seconds:g}s if that worker was just stopped)"
        )


def _ago(record: WorkerRecord) -> str:
    return f"{max(0.0, (utcnow() - record.last_seen).total_seconds()):.1f}s"
