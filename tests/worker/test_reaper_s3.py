"""The reaper cleans up an interrupted attempt's objects in an S3-compatible store: it lists the
attempt's key prefix (derived from the lease token) and deletes what it finds, nothing else."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from models import Image, lifecycle
from models.base import utcnow
from models.db import make_engine, make_session_factory
from models.image_store import object_key_for
from models.queue import RenderQueue, make_celery
from models.s3_store import S3ImageStore
from tests.factories import add_job
from tests.s3_server import aws_env, bucket_keys, client
from worker.reaper import Reaper

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_reaper_deletes_the_objects_of_an_interrupted_attempt(settings, s3_server, monkeypatch):
    for name, value in aws_env().items():
        monkeypatch.setenv(name, value)
    bucket = f"reap-{uuid.uuid4().hex[:10]}"
    s3 = client(s3_server.url)
    s3.create_bucket(Bucket=bucket)
    store = S3ImageStore(bucket, "farm/", s3_server.url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    with sessions() as session:
        add_job(session, 2)
    claim = lifecycle.claim(sessions, model="tiny", worker="gone@host-c", max_batch=4, lease_seconds=30)
    first, second = claim.items
    # The worker stored the first image's PNG and thumbnail and the second one's PNG, then vanished.
    interrupted = [object_key_for(first.job_id, first.index, claim.token, s) for s in (".png", ".thumb.webp")]
    interrupted.append(object_key_for(second.job_id, second.index, claim.token, ".png"))
    for key in interrupted:
        store.put(key, b"half-saved")
    # Objects of another attempt at the same image (another token) and an init image stay.
    kept = [object_key_for(first.job_id, first.index, "0123456789abcdef", ".png"), "inputs/abc.png"]
    for key in kept:
        store.put(key, b"keep")
    with sessions() as session:
        session.execute(update(Image).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()

    report = Reaper(sessions, queue, store, max_attempts=3, max_batch=4).run_once()

    assert report.requeued == 2
    assert bucket_keys(s3, bucket) == {f"farm/{key}" for key in kept}
