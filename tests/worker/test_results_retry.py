"""The batch write's retry (tenacity): the database fails twice, the third try records the batch."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from models import Image, lifecycle
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from tests.factories import add_job
from worker import results as results_module
from worker.results import ResultStore


def test_two_database_errors_then_the_batch_is_recorded(settings, monkeypatch, caplog):
    monkeypatch.setattr(results_module, "DB_RETRY_DELAYS", (0.01, 0.02, 0.03))
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        add_job(session, 2)
    claim = lifecycle.claim(sessions, model="tiny", worker="w@h", max_batch=4, lease_seconds=30)
    calls = {"n": 0}

    def flaky_sessions():
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("UPDATE images", {}, Exception("server closed the connection unexpectedly"))
        return sessions()

    store = ResultStore(flaky_sessions, LocalImageStore(settings.resolved_object_dir), "abc")
    written = [(item.id, {"object_key": f"k{item.id}", "sha256": "0" * 64}) for item in claim.items]
    assert store._record(claim.token, written) == {item.id for item in claim.items}
    assert calls["n"] == 3
    assert [r.message for r in caplog.records if "retrying" in r.message][0].count("try 1") == 1
    with sessions() as session:
        assert {row.status for row in session.scalars(select(Image))} == {"succeeded"}
    engine.dispose()


def test_the_retry_gives_up_after_its_last_delay(settings, monkeypatch):
    monkeypatch.setattr(results_module, "DB_RETRY_DELAYS", (0.01,))
    calls = {"n": 0}

    def down():
        calls["n"] += 1
        raise OperationalError("UPDATE images", {}, Exception("down"))

    store = ResultStore(down, LocalImageStore(settings.resolved_object_dir), "abc")
    try:
        store._record("token", [(1, {"object_key": "k"})])
    except OperationalError:
        pass
    else:
        raise AssertionError("the last error should be raised")
    assert calls["n"] == 2
