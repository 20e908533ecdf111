"""The lifecycle's transitions one by one: claims (batch limits, priorities, compatibility, no double
claims), release at the attempt cap, and cancel stopping running and queued images for good."""

from __future__ import annotations

import threading

from sqlalchemy import select, update

from models import Image, lifecycle
from models.db import make_engine, make_session_factory
from models.queue import RenderQueue, make_celery, queue_name
from sdfarm.migrate import upgrade
from tests.factories import add_job


def take(sessions, model: str = "tiny", max_batch: int = 4, worker: str = "w"):
    """Claim with a 30 s lease."""
    return lifecycle.claim(sessions, model=model, worker=worker, max_batch=max_batch, lease_seconds=30)


def _sessions(database_url):
    upgrade(database_url)
    return make_session_factory(make_engine(database_url))


def test_claims_at_most_max_batch_and_never_twice(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        add_job(session, 10)
    claims = [take(sessions, "tiny", 4) for _ in range(4)]
    assert [len(c.items) for c in claims[:3]] == [4, 4, 2] and claims[3] is None
    ids = [item.id for claim in claims[:3] for item in claim.items]
    assert len(ids) == len(set(ids)) == 10


def test_concurrent_claims_do_not_overlap(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        add_job(session, 40)
    taken: list[list[int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while claim := take(sessions, "tiny", 3, worker=name):
            with lock:
                taken.append([item.id for item in claim.items])

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for batch in taken for i in batch]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40
    assert all(len(batch) <= 3 for batch in taken)


def test_priority_then_age_and_only_compatible_items(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        low = add_job(session, 3, priority=1, batch_key="a")
        high = add_job(session, 2, priority=9, batch_key="b")
        other_model = add_job(session, 2, priority=9, model="other", batch_key="b")
    first = take(sessions, "tiny", 8)
    assert {item.job_id for item in first.items} == {high.id} and len(first.items) == 2
    second = take(sessions, "tiny", 8)
    assert {item.job_id for item in second.items} == {low.id}
    assert take(sessions, "tiny", 8) is None
    assert {item.job_id for item in take(sessions, "other", 8).items} == {other_model.id}


def test_run_alone_items_are_claimed_one_by_one(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        add_job(session, 4)
        session.execute(update(Image).where(Image.index < 2).values(run_alone=True))
        session.commit()
    sizes = []
    while claim := take(sessions, "tiny", 4):
        sizes.append(len(claim.items))
    assert sizes == [1, 1, 2]


def test_release_for_retry_requeues_then_fails_at_the_cap(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        add_job(session, 1)
    for attempt in range(1, 4):
        claim = take(sessions, "tiny", 4)
        assert claim.items[0].attempts == attempt
        ids = [claim.items[0].id]
        lifecycle.release(sessions, token=claim.token, image_ids=ids, error=f"boom {attempt}", max_attempts=3)
    with sessions() as session:
        item = session.scalars(select(Image)).one()
        assert (item.status, item.error, item.attempts) == ("failed", "boom 3", 3)
    assert take(sessions, "tiny", 4) is None


def test_unclaim_gives_back_a_claim_that_never_rendered(database_url):
    sessions = _sessions(database_url)
    with sessions() as session:
        job_id = add_job(session, 3).id
    claim = take(sessions, "tiny", 2)
    assert lifecycle.unclaim(sessions, token=claim.token) == 2
    assert lifecycle.unclaim(sessions, token=claim.token) == 0  # nothing held any more
    with sessions() as session:
        rows = list(session.scalars(select(Image).order_by(Image.id)))
    assert [(r.status, r.attempts, r.lease_expires_at) for r in rows] == [("queued", 0, None)] * 3
    # A canceled job's claim stays canceled: cancel took its running rows, so nothing is held.
    claim = take(sessions, "tiny", 2)
    lifecycle.cancel(sessions, job_id=job_id)
    assert lifecycle.unclaim(sessions, token=claim.token) == 0
    with sessions() as session:
        assert set(session.scalars(select(Image.status))) == {"canceled"}


def test_continue_work_keeps_one_message_waiting_while_work_remains(settings):
    sessions = _sessions(settings.resolved_database_url)
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    with sessions() as session:
        add_job(session, 12)
    for _ in range(2):  # a worker chaining claims: one message is enough for the next idle worker
        take(sessions)
        lifecycle.continue_work(sessions, queue, model="tiny")
    assert queue.depth("tiny") == 1
    queue.redis.delete(queue_name("tiny"))  # another worker took it
    take(sessions)  # the last batch: nothing is left to tell anyone about
    lifecycle.continue_work(sessions, queue, model="tiny")
    assert queue.depth("tiny") == 0
