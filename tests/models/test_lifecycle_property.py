"""The lifecycle under random interleavings of every actor, checked after every step.

Hypothesis drives claims, renewals, successes, failures, releases, lease expiry with a reap,
shutdown releases and cancels from several workers, including workers that act on a lease they
no longer hold (a reaped batch whose worker wakes up). After each step:

- no image succeeds twice;
- no image of a canceled job is claimed after the cancel, and none is queued or running;
- attempts never exceed the cap;
- nothing is `running` without a live lease;
- final states are final: an image that reached one never changes again;
and at the end, after the farm drains, every image is in exactly one final state.

`SDFARM_LIFECYCLE_EXAMPLES` sets how many runs (default 25 per database; 1,000 for a long run).
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select, update

from models import Image, Job, lifecycle
from models.base import utcnow
from models.db import make_engine, make_session_factory
from models.image import FINAL_STATUSES, ImageStatus
from sdfarm.migrate import upgrade
from tests.factories import add_job

MAX_ATTEMPTS = 3
WORKERS = ("gpu0@a", "gpu1@a", "gpu0@b")
EXAMPLES = int(os.environ.get("SDFARM_LIFECYCLE_EXAMPLES", "25"))


def lifecycle_machine(sessions):
    """A state machine class bound to one database."""

    class LifecycleMachine(RuleBasedStateMachine):
        """A model of what each worker believes it holds, checked against the rows."""

        @initialize(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3))
        def make_jobs(self, sizes):
            with sessions() as session:
                session.execute(delete(Image))
                session.execute(delete(Job))
                session.commit()
                self.jobs = [add_job(session, size).id for size in sizes]
            # Every lease ever handed out, in order (never forgotten: a reaped batch's worker may wake up).
            self.leases: list[str] = []
            self.succeeded: set[int] = set()
            self.canceled: set[int] = set()
            self.final: dict[int, str] = {}

        def _lease(self, data) -> str:
            return data.draw(st.sampled_from(self.leases))

        def _ids_of(self, token: str) -> list[int]:
            with sessions() as session:
                return list(session.scalars(select(Image.id).where(Image.lease_token == token).order_by(Image.id)))

        @rule(worker=st.sampled_from(WORKERS), max_batch=st.integers(1, 4))
        def claim(self, worker, max_batch):
            got = lifecycle.claim(sessions, model="tiny", worker=worker, max_batch=max_batch, lease_seconds=300)
            if got is not None:
                assert not {item.job_id for item in got.items} & self.canceled, "claimed after cancel"
                assert len(got.items) <= max_batch
                self.leases.append(got.token)

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def renew(self, data):
            lifecycle.renew(sessions, token=self._lease(data), lease_seconds=300, progress=0.5)

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def succeed(self, data):
            token = self._lease(data)
            ids = data.draw(st.lists(st.sampled_from(self._ids_of(token) or [0]), unique=True))
            results = {image_id: {"object_key": f"{image_id}-{token}", "sha256": "0" * 64} for image_id in ids}
            recorded = lifecycle.succeed(sessions, token=token, results=results)
            again = recorded & self.succeeded
            # A retry of the same lease may find its own earlier writes; any other overlap is a double success.
            assert all(self._recorded_by(image_id) == token for image_id in again), f"succeeded twice: {again}"
            self.succeeded |= recorded

        def _recorded_by(self, image_id: int) -> str | None:
            with sessions() as session:
                return session.scalar(select(Image.lease_token).where(Image.id == image_id))

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def fail(self, data):
            token = self._lease(data)
            ids = data.draw(st.lists(st.sampled_from(self._ids_of(token) or [0]), unique=True))
            lifecycle.fail(sessions, token=token, image_ids=ids, error="cannot be fixed")

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def release(self, data):
            token = self._lease(data)
            lifecycle.release(
                sessions, token=token, image_ids=self._ids_of(token), error="try again", max_attempts=MAX_ATTEMPTS
            )

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def expire_and_reap(self, data):
            token = self._lease(data)
            with sessions() as session:  # time passes for this lease only: its worker stopped renewing
                session.execute(
                    update(Image)
                    .where(Image.lease_token == token, Image.lease_expires_at.is_not(None))
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
                session.commit()
            lifecycle.reap(sessions, max_attempts=MAX_ATTEMPTS)

        @rule(worker=st.sampled_from(WORKERS))
        def shut_down(self, worker):
            lifecycle.release_worker(sessions, worker=worker)

        @rule(data=st.data())
        def cancel(self, data):
            job_id = data.draw(st.sampled_from(self.jobs))
            lifecycle.cancel(sessions, job_id=job_id)
            self.canceled.add(job_id)

        @invariant()
        def rows_obey_the_rules(self):
            now = utcnow()
            with sessions() as session:
                rows = list(session.scalars(select(Image)))
            for row in rows:
                assert row.attempts <= MAX_ATTEMPTS, (row.id, row.attempts)
                if row.status == ImageStatus.RUNNING:
                    assert row.lease_token and row.lease_expires_at and row.lease_expires_at > now, row.id
                if row.job_id in self.canceled:
                    assert row.status not in (ImageStatus.QUEUED, ImageStatus.RUNNING), (row.id, row.status)
                if row.id in self.final:
                    assert row.status == self.final[row.id], f"image {row.id} left {self.final[row.id]}"
                elif row.status in FINAL_STATUSES:
                    self.final[row.id] = row.status
                if row.status == ImageStatus.SUCCEEDED:
                    assert row.id in self.succeeded and row.object_key

        def teardown(self):
            """Drain: every lease expires and the rest is claimed and finished; all must end final."""
            if not hasattr(self, "jobs"):
                return
            for _ in range(2 * MAX_ATTEMPTS + 2):
                lifecycle.reap(sessions, max_attempts=MAX_ATTEMPTS, now=utcnow() + timedelta(days=1))
                while got := lifecycle.claim(sessions, model="tiny", worker="drain", max_batch=8, lease_seconds=300):
                    results = {item.id: {"object_key": f"{item.id}-{got.token}"} for item in got.items}
                    assert lifecycle.succeed(sessions, token=got.token, results=results) == set(results)
            with sessions() as session:
                statuses = dict(session.execute(select(Image.id, Image.status)).all())
            assert set(statuses.values()) <= set(FINAL_STATUSES), statuses
            for image_id, status in self.final.items():
                assert statuses[image_id] == status

    return LifecycleMachine


def test_random_interleavings_keep_every_invariant(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    machine = lifecycle_machine(make_session_factory(engine))
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    engine.dispose()
