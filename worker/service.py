"""render_next: claim a batch for a model, render it, store it; the body of the Celery task."""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache

from PIL import Image as PILImage
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import lifecycle
from models.farm_metrics import record_batch
from models.image import Image
from models.image_store import ImageStore
from models.lifecycle import Claim
from models.logging_config import bind_work, unbind_work
from models.queue import RenderQueue
from worker.lease import LeaseKeeper
from worker.results import Rendered, ResultStore
from worker.runner import GpuOutOfMemoryError, PipelineRunner, RenderRequest
from worker.stats import WorkerStats

log = logging.getLogger(__name__)

# One task renders batches back to back for up to this long, claiming each batch's successor (while
# it renders, with overlap); then it returns, so a warm shutdown waits at most this long plus one batch.
CHAIN_SECONDS = 10.0
# The successor is claimed once this much of a batch is denoised: early enough to be ready when the
# batch ends, late enough that a worker killed mid-batch seldom holds a second, unstarted claim.
CLAIM_AHEAD_AT = 0.7


class PermanentItemError(Exception):
    """An item that cannot succeed by trying again as it is (too big for the GPU, NaN output)."""


class BatchWithdrawn(Exception):
    """The batch is no longer this worker's (its job was canceled, or the reaper took it back)."""


class RenderService:
    """Runs batches for one worker process; the pipeline runner is injected (real or simulated)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ImageStore,
        runner: PipelineRunner,
        queue: RenderQueue,
        stats: WorkerStats,
        worker_name: str,
        max_batch: int,
        lease_seconds: float,
        max_attempts: int,
        overlap: bool = True,
        chain_seconds: float = CHAIN_SECONDS,
    ):
        self.sessions = sessions
        self.store = store
        self.runner = runner
        self.queue = queue
        self.stats = stats
        self.worker_name = worker_name
        self.max_batch = max_batch
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.chain_seconds = chain_seconds
        self._claimer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claimer")
        self.results = ResultStore(sessions, store, runner.model_hash)
        # SDFARM_OVERLAP (worker.context.overlaps): with it, a batch is saved on the saver thread
        # beside the next one and the next is claimed while this one renders, so a GPU never waits
        # for PNG encoding, the database or Redis; without it, both happen between two batches.
        self.overlap = overlap
        self._claim_ahead_at = CLAIM_AHEAD_AT if overlap else math.inf
        # At most one batch waits to be saved, to bound memory.
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saver")
        self._save_slots = threading.BoundedSemaphore(2)
        self._pending: set[Future] = set()
        # A big image-to-image job sends the same init image (and mask) with every batch; their
        # keys are never reused, so each is read and decoded once, not once per batch.
        self._input_picture = lru_cache(maxsize=8)(self._read_input_picture)

    def run_next(self, model: str) -> int:
        """Render `model`'s batches back to back for up to `chain_seconds`; returns how many images it rendered.

        The device does not wait for Celery to hand over the next message between two batches, nor,
        with overlap, for the claim: each batch's successor is claimed while it renders.
        """
        deadline = time.monotonic() + self.chain_seconds
        held = self._claim(model)
        rendered = 0
        while held is not None:
            ahead = _ClaimAhead(self, model) if time.monotonic() < deadline else None
            try:
                rendered += self._run_batch(*held, ahead)
            except Exception:
                if ahead is not None:
                    ahead.give_back()  # stop here: a worker whose batches fail should not race through the queue
                raise
            held = ahead.result() if ahead is not None else None
        return rendered

    def _claim(self, model: str) -> tuple[Claim, LeaseKeeper] | None:
        """Claim the next batch and start keeping its lease; publish for the rest of the queue."""
        claim = lifecycle.claim(
            self.sessions,
            model=model,
            worker=self.worker_name,
            max_batch=self.max_batch,
            lease_seconds=self.lease_seconds,
        )
        held = None if claim is None else (claim, LeaseKeeper(self.sessions, claim.token, self.lease_seconds).start())
        try:
            lifecycle.continue_work(self.sessions, self.queue, model=model)
        except (RedisError, OperationalError) as error:
            # The claim stands and is rendered; the reaper publishes for queued work left without a message.
            log.warning("could not publish for the rest of %s's queue: %s", model, error)
        return held

    def _run_batch(self, claim: Claim, lease: LeaseKeeper, ahead: _ClaimAhead | None) -> int:
        """Render one claimed batch and hand it to the saver; returns how many images it rendered."""
        logged = bind_work(**batch_fields(claim))
        if claim.items[0].run_alone:
            # A suspect (its last batch died with its worker) runs only after every earlier
            # image is saved, so if it kills this process too it takes nothing else with it.
            self.flush()
        self.stats.busy(claim.items[0].job_id)
        started = time.monotonic()
        handed_over = False
        try:
            rendered = self._render(claim, lease, ahead)
            if ahead is not None:
                ahead.start()  # without overlap: the next batch is claimed while this one is saved
            self._save_slots.acquire()
            handed_over = True
            if not self.overlap:
                self._save(claim, rendered, lease, started)
                return len(rendered)
            pending = self._saver.submit(self._save, claim, rendered, lease, started)
            self._pending.add(pending)
            pending.add_done_callback(self._pending.discard)
            return len(rendered)
        except BatchWithdrawn:
            log.info("batch %s stopped: its images were canceled or taken back", claim.token[:8])
            return 0
        except Exception as error:
            log.exception("batch %s failed", claim.token[:8])
            lifecycle.release(
                self.sessions,
                token=claim.token,
                image_ids=[i.id for i in claim.items],
                error=_describe(error),
                max_attempts=self.max_attempts,
            )
            raise
        finally:
            if not handed_over:
                lease.stop()
            self.stats.idle()
            unbind_work(logged)

    def flush(self) -> None:
        """Wait until every image rendered so far is saved."""
        wait(list(self._pending))

    def close(self) -> None:
        """Save what is pending and stop the saver thread (before the process exits)."""
        self.flush()
        self._saver.shutdown(wait=True)
        self._claimer.shutdown(wait=True)

    def _render(self, claim: Claim, lease: LeaseKeeper, ahead: _ClaimAhead | None) -> list[Rendered]:
        request = self._request_for(claim.items)
        started = time.perf_counter()
        outcomes = self._render_splitting(claim.items, request, lease, ahead)
        elapsed = time.perf_counter() - started
        per_image = elapsed / len(claim.items)
        record_batch(self.queue.redis, claim.items[0].model, elapsed, len(claim.items))
        log.info("rendered %d images in %.2fs", len(claim.items), elapsed)
        rendered: list[Rendered] = []
        for item, picture_or_error in outcomes:
            if isinstance(picture_or_error, PermanentItemError):
                lifecycle.fail(self.sessions, token=claim.token, image_ids=[item.id], error=str(picture_or_error))
            else:
                rendered.append(Rendered(item, picture_or_error, per_image))
        return rendered

    def _render_splitting(
        self, items: list[Image], request: RenderRequest, lease: LeaseKeeper, ahead: _ClaimAhead | None
    ) -> list[tuple]:
        """Render; on out-of-memory split the batch in halves, down to single images."""

        def progress(fraction: float) -> None:
            if lease.lost.is_set():
                raise BatchWithdrawn(lease.token)  # stop denoising: nobody wants this batch any more
            lease.progress = fraction
            if ahead is not None and fraction >= self._claim_ahead_at:
                ahead.start()

        try:
            output = self.runner.generate(request, progress)
        except GpuOutOfMemoryError as error:
            if len(items) == 1:
                reason = (
                    f"out of GPU memory even for a single {request.width}x{request.height} image; "
                    f"use a smaller size or a GPU with more memory ({error})"
                )
                return [(items[0], PermanentItemError(reason))]
            half = len(items) // 2
            log.warning("out of memory for a batch of %d; retrying as %d + %d", len(items), half, len(items) - half)
            first = self._render_splitting(items[:half], request.subset(0, half), lease, ahead)
            return first + self._render_splitting(items[half:], request.subset(half, len(items)), lease, ahead)
        outcomes: list[tuple] = []
        flagged = output.nsfw or [False] * len(items)
        for item, picture, is_nan, nsfw in zip(items, output.images, output.nan, flagged, strict=True):
            # A flagged picture is kept and marked (row and infotext), never swapped for a black one.
            item.nsfw = nsfw
            if is_nan:
                reason = "the image came out as NaN (black) even with the VAE in fp32; try another seed or VAE"
                outcomes.append((item, PermanentItemError(reason)))
            else:
                outcomes.append((item, picture))
        return outcomes

    def _request_for(self, items: list[Image]) -> RenderRequest:
        first = items[0]
        job = first.job
        init_image = self._input_picture(job.init_image_key, "RGB") if job.init_image_key else None
        mask_image = self._input_picture(job.mask_image_key, "L") if job.mask_image_key else None
        return RenderRequest(
            prompts=[item.prompt for item in items],
            negative_prompts=[item.negative_prompt for item in items],
            seeds=[item.seed for item in items],
            steps=first.steps,
            guidance_scale=first.guidance_scale,
            width=first.width,
            height=first.height,
            sampler=first.scheduler,
            clip_skip=first.clip_skip,
            strength=first.strength,
            init_image=init_image,
            mask_image=mask_image,
            loras=first.loras,
        )

    def _read_input_picture(self, key: str, mode: str) -> PILImage.Image:
        return PILImage.open(io.BytesIO(self.store.read(key))).convert(mode)

    def _save(self, claim: Claim, rendered: list[Rendered], lease: LeaseKeeper, started: float) -> None:
        logged = bind_work(**batch_fields(claim))  # with overlap this runs in the saver thread
        try:
            stored = self.results.save_batch(claim.token, rendered, lease.renewing)
            self.stats.finished(stored, started)
            log.info("stored %d of %d images", stored, len(rendered))
        except Exception:
            log.exception("could not save batch %s; its lease will expire and it will run again", claim.token[:8])
        finally:
            lease.stop()
            self._save_slots.release()
            unbind_work(logged)


class _ClaimAhead:
    """The claim of the batch after the one rendering: started on the claimer thread once that
    batch is far enough along (or when it ends), collected when it ends."""

    def __init__(self, service: RenderService, model: str):
        self._service, self._model = service, model
        self._future: Future | None = None

    def start(self) -> None:
        """Begin claiming, once; later calls do nothing."""
        if self._future is None:
            self._future = self._service._claimer.submit(self._service._claim, self._model)

    def result(self) -> tuple[Claim, LeaseKeeper] | None:
        """The next batch and its lease keeper, or None when nothing was claimable (or the claim failed)."""
        self.start()
        try:
            return self._future.result()
        except Exception as error:  # the database or Redis blinked: the queued messages and the reaper carry on
            log.warning("could not claim the next batch: %s", error)
            return None

    def give_back(self) -> None:
        """Return a claim that will not be rendered to the queue, its attempt not counted."""
        if self._future is None:
            return
        held = self.result()
        if held is not None:
            claim, lease = held
            lease.stop()
            lifecycle.unclaim(self._service.sessions, token=claim.token)


def batch_fields(claim: Claim) -> dict:
    """What the log lines about a batch name: its job, its id (the lease token's head) and its images."""
    return {"job_id": claim.items[0].job_id, "batch": claim.token[:8], "image_ids": [item.id for item in claim.items]}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]
