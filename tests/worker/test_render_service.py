"""The render service's fault paths, called directly with the tiny model's real runner."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest
import redis
import torch
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from models import Image, lifecycle
from models.catalog import ModelEntry
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore
from models.queue import RenderQueue, make_celery
from sdfarm.migrate import upgrade
from tests.factories import add_job
from tests.fault.runners import SmallGpuRunner
from worker import results as results_module
from worker.diffusers_runner import DiffusersRunner
from worker.service import RenderService
from worker.stats import WorkerStats

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def service_factory(settings, models_dir):
    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    store = LocalImageStore(settings.resolved_object_dir)
    queue = RenderQueue(make_celery(settings), settings.redis_url)
    entry = ModelEntry("tiny", models_dir / "tiny", "diffusers")

    def make(runner_class=DiffusersRunner, max_batch=4, overlap=True) -> RenderService:
        runner = runner_class(entry, "cpu")
        return RenderService(
            sessions, store, runner, queue, WorkerStats(), "test@host", max_batch, 30, 3, overlap=overlap
        )

    make.sessions, make.store = sessions, store
    return make


def _rows(sessions) -> list[Image]:
    with sessions() as session:
        return list(session.scalars(select(Image).order_by(Image.id)))


def test_out_of_memory_splits_the_batch_and_fails_only_what_cannot_fit(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 4, prompt="fine")
        add_job(session, 1, prompt="huge picture")
    service = service_factory(SmallGpuRunner)
    service.run_next("tiny")  # 4 images: OOM at 4, split into 2 + 2
    service.run_next("tiny")  # the huge one: OOM even alone
    service.flush()
    rows = _rows(service_factory.sessions)
    assert [r.status for r in rows if r.prompt == "fine"] == ["succeeded"] * 4
    huge = next(r for r in rows if r.prompt == "huge picture")
    assert huge.status == "failed" and "out of GPU memory even for a single 64x64 image" in huge.error
    assert huge.attempts == 1 and huge.object_key is None


def test_nan_output_is_decoded_again_in_fp32_then_failed(service_factory, monkeypatch):
    service = service_factory()
    vae = service.runner.pipeline.vae
    vae.to(torch.bfloat16)  # pretend half precision, so the fp32 retry path applies
    real_decode, calls = vae.decode, []

    def decode(latents, return_dict=False):
        calls.append(latents.dtype)
        output = real_decode(latents, return_dict=False)[0]
        if latents.dtype != torch.float32 or len(calls) > 2:  # the fp32 retry cures the first batch only
            output = output.clone()
            output[0] = float("nan")
        return (output,)

    monkeypatch.setattr(vae, "decode", decode)
    with service_factory.sessions() as session:
        add_job(session, 2)
    service.run_next("tiny")
    service.flush()
    assert calls[:2] == [torch.bfloat16, torch.float32]
    assert [r.status for r in _rows(service_factory.sessions)] == ["succeeded", "succeeded"]
    with service_factory.sessions() as session:
        add_job(session, 1)
    service.run_next("tiny")
    service.flush()
    last = _rows(service_factory.sessions)[-1]
    assert last.status == "failed" and "NaN" in last.error


def test_a_redelivered_message_for_finished_work_is_a_no_op(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 2)
    service = service_factory()
    assert service.run_next("tiny") == 2
    service.flush()
    files = sorted(service_factory.store.keys())
    assert service.run_next("tiny") == 0
    service.flush()
    assert sorted(service_factory.store.keys()) == files


def test_lost_lease_discards_the_files(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 1)
    service = service_factory()
    claim = lifecycle.claim(service.sessions, model="tiny", worker="other@host", max_batch=4, lease_seconds=30)
    token = claim.token
    # Another worker held it; the reaper gave it back and this worker renders it again.
    with service_factory.sessions() as session:
        session.get(Image, claim.items[0].id).status = "queued"
        session.commit()
    service.run_next("tiny")
    service.flush()
    row = _rows(service_factory.sessions)[0]
    assert row.status == "succeeded" and row.lease_token != token
    # A late save by the first holder must not overwrite or leave files behind.
    from worker.results import Rendered, ResultStore

    stale = ResultStore(service.sessions, service_factory.store, "abc")
    before = sorted(service_factory.store.keys())
    picture = service.runner.generate(service._request_for(claim.items), lambda _: None).images[0]
    assert stale.save_batch(token, [Rendered(claim.items[0], picture, 0.1)]) == 0
    assert sorted(service_factory.store.keys()) == before


def test_database_down_while_saving_leaves_no_file(service_factory, monkeypatch):
    monkeypatch.setattr(results_module, "DB_RETRY_DELAYS", (0.01, 0.01))
    with service_factory.sessions() as session:
        add_job(session, 2)
    service = service_factory()

    def database_down():
        raise OperationalError("UPDATE images", {}, Exception("server closed the connection unexpectedly"))

    real_sessions = service.results.sessions
    service.results.sessions = database_down
    service.run_next("tiny")
    service.flush()
    service.results.sessions = real_sessions
    assert list(service_factory.store.keys()) == []
    # The rows stay leased; when the lease runs out the reaper puts them back in the queue.
    assert {row.status for row in _rows(service_factory.sessions)} == {"running"}


def test_file_sha256_matches_row(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 3)
    service = service_factory()
    service.run_next("tiny")
    service.flush()
    for row in _rows(service_factory.sessions):
        assert hashlib.sha256(service_factory.store.read(row.object_key)).hexdigest() == row.sha256


def test_saving_in_line_stores_a_batch_before_run_next_returns(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 3)
    service = service_factory(overlap=False)
    assert service.run_next("tiny") == 3
    rows = _rows(service_factory.sessions)  # no flush: nothing was left to the saver thread
    assert [row.status for row in rows] == ["succeeded"] * 3 and all(row.object_key for row in rows)
    assert not service._pending


def _queued(sessions) -> int:
    with sessions() as session:
        return len(list(session.scalars(select(Image.id).where(Image.status == "queued"))))


class WatchingRunner(DiffusersRunner):
    """The real runner; as each batch ends it notes how many images are still queued, having given
    a claim ahead (made on its own thread, with overlap) time to land, and it fails the batch numbered `fail_at`."""

    sessions = None
    fail_at: int | None = None
    expect_claim_ahead = True

    def generate(self, request, on_progress):
        self.queued_at_end = getattr(self, "queued_at_end", [])
        queued_before = _queued(self.sessions)
        output = super().generate(request, on_progress)
        deadline = time.monotonic() + 10
        waiting = self.expect_claim_ahead and queued_before
        while waiting and _queued(self.sessions) == queued_before and time.monotonic() < deadline:
            time.sleep(0.02)
        self.queued_at_end.append(_queued(self.sessions))
        if len(self.queued_at_end) == self.fail_at:
            raise RuntimeError("boom")
        return output


@pytest.mark.parametrize(("overlap", "queued_at_end"), [(True, [2, 0, 0]), (False, [6, 2, 0])])
def test_one_message_renders_batches_back_to_back_claiming_the_next_during_the_render_with_overlap(
    service_factory, overlap, queued_at_end
):
    with service_factory.sessions() as session:
        add_job(session, 10)
    service = service_factory(WatchingRunner, overlap=overlap)
    service.runner.sessions, service.runner.expect_claim_ahead = service_factory.sessions, overlap
    assert service.run_next("tiny") == 10
    service.flush()
    rows = _rows(service_factory.sessions)
    assert {row.status for row in rows} == {"succeeded"} and len({row.lease_token for row in rows}) == 3
    # With overlap, batches 1 and 2 ended with their successor already claimed; without it, each
    # successor is claimed only once its predecessor is done.
    assert service.runner.queued_at_end == queued_at_end


def test_a_chain_ends_at_its_time_limit(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 10)
    service = service_factory()
    service.chain_seconds = 0.0  # one batch per message, as a worker without chaining would
    assert service.run_next("tiny") == 4
    service.flush()
    assert [row.status for row in _rows(service_factory.sessions)].count("queued") == 6


def test_a_failed_batch_gives_back_the_claim_made_ahead_of_it(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 10)
    service = service_factory(WatchingRunner)
    service.runner.sessions, service.runner.fail_at = service_factory.sessions, 2
    with pytest.raises(RuntimeError, match="boom"):
        service.run_next("tiny")
    service.flush()
    rows = _rows(service_factory.sessions)
    assert [(row.status, row.attempts) for row in rows] == [("succeeded", 1)] * 4 + [("queued", 1)] * 4 + [
        ("queued", 0)
    ] * 2
    assert rows[4].error == "RuntimeError: boom" and rows[8].error is None


def test_a_broker_down_after_a_claim_leaves_the_claim_rendered_not_orphaned(service_factory):
    with service_factory.sessions() as session:
        add_job(session, 3)
    service = service_factory()
    with socket.socket() as probe:  # a port nobody listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        service.queue.redis = redis.Redis(port=probe.getsockname()[1], socket_connect_timeout=1)
    assert service.run_next("tiny") == 3
    service.flush()
    assert [row.status for row in _rows(service_factory.sessions)] == ["succeeded"] * 3
