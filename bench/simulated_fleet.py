"""Simulated GPUs for the control-plane bench: many asyncio tasks in one process, each behaving like
an H200 on SD 1.5 (8 images per 1.6 s batch) and talking to the central parts as a worker does: it
takes a Celery message from Redis (with kombu's unacked bookkeeping), claims through
models/lifecycle.py, renews its lease and writes heartbeats on the worker's own schedule, records
the batch's metrics, and saves the batch with the worker's ResultStore."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis.asyncio as aioredis
from PIL import Image as PILImage

from models import lifecycle
from models.db import make_engine, make_session_factory
from models.farm_metrics import record_batch
from models.image_store import LocalImageStore
from models.queue import RenderQueue, make_celery, queue_name
from models.settings import Settings
from worker.heartbeat import Heartbeat
from worker.lease import renewal_interval
from worker.results import Rendered, ResultStore
from worker.stats import WorkerStats

MODEL = "tiny"
GPU_BATCH_SECONDS = 1.6  # an H200 on SD 1.5, 512x512, 30 steps, batch of 8
GPU_BATCH_SIZE = 8
SAVES_IN_FLIGHT = 2  # as RenderService: one batch saving while the next renders


@dataclass
class FleetCounters:
    """What the simulated fleet did, for the report."""

    batches: int = 0
    empty_claims: int = 0
    renewals: int = 0
    heartbeats: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)


class SimulatedFleet:
    """`gpus` simulated GPUs as asyncio tasks; database calls run on a bounded thread pool."""

    def __init__(self, settings: Settings, gpus: int, object_dir: Path, threads: int = 32):
        self.settings = settings
        self.gpus = gpus
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fleet")
        # One connection per thread: a real worker has its own; here many GPUs share a pool.
        self.sessions = make_session_factory(
            make_engine(settings.resolved_database_url, pool_size=threads, max_overflow=0, pool_timeout=120)
        )
        self.queue = RenderQueue(make_celery(settings), settings.redis_url)
        self.results = ResultStore(self.sessions, LocalImageStore(object_dir), "simulated0")
        self.counters = FleetCounters()
        self.stopping = False
        self.picture = PILImage.new("RGB", (8, 8), (128, 128, 128))

    async def _call(self, function, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(function, *args, **kwargs))

    async def run(self, until: threading.Event) -> None:
        """Run every GPU until `until` is set, then let batches in flight finish."""
        self.redis = aioredis.Redis.from_url(self.settings.redis_url, max_connections=self.gpus * 3 + 10)
        gpus = [asyncio.create_task(self._gpu(index)) for index in range(self.gpus)]
        while not until.is_set():
            await asyncio.sleep(0.1)
        self.stopping = True
        await asyncio.gather(*gpus, return_exceptions=True)
        await self.redis.aclose()

    async def _gpu(self, index: int) -> None:
        # Real GPUs do not all start in the same instant: spread the first beats and claims over a batch.
        await asyncio.sleep(random.uniform(0, GPU_BATCH_SECONDS))
        name = f"sim{index}@central-bench"
        stats = WorkerStats()
        stats.loaded()
        heartbeat = Heartbeat(self.sessions, name, MODEL, stats, self.settings.heartbeat_seconds, {"device": "cuda"})
        beating = asyncio.create_task(self._heartbeat(heartbeat))
        slots = asyncio.Semaphore(SAVES_IN_FLIGHT)
        saves: set[asyncio.Task] = set()
        try:
            while not self.stopping:
                tag = await self._take_message()
                if tag is None:
                    continue
                try:
                    await self._batch(name, stats, slots, saves)
                except Exception as error:  # a benchmark reports failures instead of dying
                    self.counters.errors.append(f"{type(error).__name__}: {error}"[:300])
                finally:
                    await self._ack(tag)
            await asyncio.gather(*saves, return_exceptions=True)
        finally:
            beating.cancel()

    async def _take_message(self) -> str | None:
        """BRPOP a render message and park it in kombu's unacked set, as a Celery worker does."""
        got = await self.redis.brpop([queue_name(MODEL)], timeout=1)
        if got is None:
            return None
        tag = uuid.uuid4().hex
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd("unacked_index", {tag: time.time()}).hset("unacked", tag, got[1])
            await pipe.execute()
        self.counters.messages += 1
        return tag

    async def _ack(self, tag: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel("unacked", tag).zrem("unacked_index", tag)
            await pipe.execute()

    async def _batch(self, name: str, stats: WorkerStats, slots: asyncio.Semaphore, saves: set) -> None:
        settings = self.settings
        claim = await self._call(
            lifecycle.claim,
            self.sessions,
            model=MODEL,
            worker=name,
            max_batch=GPU_BATCH_SIZE,
            lease_seconds=settings.lease_seconds,
        )
        await self._call(lifecycle.continue_work, self.sessions, self.queue, model=MODEL)
        if claim is None:
            self.counters.empty_claims += 1
            return
        stats.busy(claim.items[0].job_id)
        renewing = threading.Lock()  # as LeaseKeeper.renewing: a renewal never races the batch's save
        lease = asyncio.create_task(self._keep_lease(claim.token, renewing))
        await asyncio.sleep(GPU_BATCH_SECONDS)  # the GPU renders
        await self._call(record_batch, self.queue.redis, MODEL, GPU_BATCH_SECONDS, len(claim.items))
        stats.idle()
        await slots.acquire()
        rendered = [Rendered(item, self.picture, GPU_BATCH_SECONDS / len(claim.items)) for item in claim.items]
        task = asyncio.create_task(self._save(claim.token, rendered, lease, renewing, slots, stats))
        saves.add(task)
        task.add_done_callback(saves.discard)

    async def _save(self, token, rendered, lease: asyncio.Task, renewing, slots: asyncio.Semaphore, stats) -> None:
        try:
            stored = await self._call(self.results.save_batch, token, rendered, renewing)
            stats.finished(stored)
            self.counters.batches += 1
        finally:
            lease.cancel()
            slots.release()

    async def _keep_lease(self, token: str, renewing: threading.Lock) -> None:
        interval = renewal_interval(self.settings.lease_seconds)
        while True:
            await asyncio.sleep(interval)
            held = await self._call(self._renew, token, renewing)
            self.counters.renewals += 1
            if held == 0:
                return

    def _renew(self, token: str, renewing: threading.Lock) -> int:
        with renewing:
            return lifecycle.renew(self.sessions, token=token, lease_seconds=self.settings.lease_seconds, progress=0.5)

    async def _heartbeat(self, heartbeat: Heartbeat) -> None:
        while True:
            await self._call(heartbeat.beat)
            self.counters.heartbeats += 1
            await asyncio.sleep(self.settings.heartbeat_seconds)

    def close(self) -> None:
        """Stop the thread pool."""
        self.executor.shutdown(wait=True)
