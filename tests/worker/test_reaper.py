"""The reaper: expired leases go back to the queue (or fail at the cap), their files are removed,
and queued work without a message in Redis is published again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import Image, lifecycle
from models.base import utcnow
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore, object_key_for
from models.queue import RenderQueue, make_celery
from sdfarm.migrate import upgrade
from tests.factories import add_job
from worker.reaper import Reaper

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_expired_lease_is_requeued_alone_and_its_files_removed(settings):
    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    store = LocalImageStore(settings.resolved_object_dir)
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    with sessions() as session:
        add_job(session, 3)
    claim = lifecycle.claim(sessions, model="tiny", worker="dead@host", max_batch=4, lease_seconds=30)
    # The worker wrote one image's files, then was killed before recording them.
    first = claim.items[0]
    keys = [object_key_for(first.job_id, first.index, claim.token, s) for s in (".png", ".thumb.webp")]
    for key in keys:
        store.put(key, b"data")
    with sessions() as session:
        session.execute(update(Image).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    report = Reaper(sessions, queue, store, max_attempts=3, max_batch=4).run_once()
    assert report.requeued == 3 and report.republished == {"tiny": 3}
    assert not any(key in set(store.keys()) for key in keys)
    with sessions() as session:
        rows = list(session.scalars(select(Image)))
    assert {(r.status, r.run_alone, r.lease_expires_at) for r in rows} == {("queued", True, None)}
    assert queue.depth("tiny") == 1


def test_expired_lease_at_the_attempt_cap_fails_with_the_reason(settings):
    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    with sessions() as session:
        add_job(session, 1)
        session.execute(update(Image).values(attempts=2))
        session.commit()
    lifecycle.claim(sessions, model="tiny", worker="dead@host", max_batch=4, lease_seconds=30)
    with sessions() as session:
        session.execute(update(Image).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    store = LocalImageStore(settings.resolved_object_dir)
    assert Reaper(sessions, queue, store, max_attempts=3, max_batch=4).run_once().failed == 1
    with sessions() as session:
        row = session.scalars(select(Image)).one()
    assert row.status == "failed" and row.error.startswith("gave up after 3 attempts")


def test_a_dead_batch_is_not_counted_against_its_images_but_a_death_alone_is(settings):
    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    store = LocalImageStore(settings.resolved_object_dir)
    reaper = Reaper(sessions, queue, store, max_attempts=3, max_batch=4)
    with sessions() as session:
        add_job(session, 2)

    def claim_and_die() -> list[tuple[int, str, bool]]:
        lifecycle.claim(sessions, model="tiny", worker="dead@host", max_batch=4, lease_seconds=30)
        with sessions() as session:
            session.execute(update(Image).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
            session.commit()
        reaper.run_once()
        with sessions() as session:
            return [(r.attempts, r.status, r.run_alone) for r in session.scalars(select(Image).order_by(Image.id))]

    # Killed from outside while both rendered together: neither is charged, both now run alone.
    assert claim_and_die() == [(0, "queued", True), (0, "queued", True)]
    # From now on each try is the item's own: the oldest is claimed alone, dies three times and fails.
    assert claim_and_die() == [(1, "queued", True), (0, "queued", True)]
    assert claim_and_die() == [(2, "queued", True), (0, "queued", True)]
    assert claim_and_die() == [(3, "failed", True), (0, "queued", True)]
