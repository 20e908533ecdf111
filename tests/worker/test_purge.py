"""The purge beside the workers: deleted images past their grace period lose their rows and files."""

from __future__ import annotations

from sqlalchemy import func, select

from models import Image
from models.curation import Selection, soft_delete
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from tests.factories import add_images
from worker.purge import Purger


def test_purger_removes_expired_deletes_in_batches(settings, monkeypatch):
    monkeypatch.setattr("worker.purge.PURGE_BATCH", 2)
    monkeypatch.setattr("models.curation.PURGE_BATCH", 2)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    store = LocalImageStore(settings.resolved_object_dir)
    with sessions() as session:
        rows = add_images(session, [f"image {n}" for n in range(5)])
        for row in rows:
            row.object_key = f"jobs/p/{row.id}.png"
            store.put(row.object_key, b"png", durable=False)
        session.commit()
        deleted, _undo = soft_delete(session, Selection(scope=None, image_ids=tuple(r.id for r in rows[:4])))
    assert deleted == 4

    assert Purger(sessions, store, grace_seconds=3600).run_once() == 0
    assert Purger(sessions, store, grace_seconds=0).run_once() == 4  # two passes of two
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
    assert sorted(store.keys()) == [f"jobs/p/{rows[4].id}.png"]
    engine.dispose()
