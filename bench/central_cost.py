"""Central cost per image: CPU time of PostgreSQL, Redis and the API while a fleet of SIMULATED GPUs works.

Many simulated GPUs run as asyncio tasks in this one process. Each behaves like an H200 on SD 1.5
(8 images per 1.6 s batch) and talks to the central parts as a worker process does: it takes a
Celery message from Redis (with kombu's unacked bookkeeping), claims through models/lifecycle.py,
renews its lease and writes heartbeats on the worker's own schedule, records the batch's metrics,
and saves the batch with the worker's ResultStore (two small objects per image, one transaction).
The CPU time of the central processes is read from the operating system before and after; this
process's own CPU (the fleet) is reported apart and never counted as central.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil
import psycopg
import redis.asyncio as aioredis
import requests
from PIL import Image as PILImage
from sqlalchemy import func, select

from bench.local_farm import BenchFarm
from models import lifecycle
from models.db import make_engine, make_session_factory
from models.farm_metrics import record_batch
from models.image import Image, ImageStatus
from models.image_store import LocalImageStore
from models.queue import RenderQueue, make_celery, queue_name
from models.settings import Settings
from sdfarm.postgres_server import PostgresServer
from sdfarm.scratch_database import scratch_database
from worker.heartbeat import Heartbeat
from worker.lease import renewal_interval
from worker.results import Rendered, ResultStore
from worker.stats import WorkerStats

MODEL = "tiny"
GPU_BATCH_SECONDS = 1.6  # an H200 on SD 1.5, 512x512, 30 steps, batch of 8
GPU_BATCH_SIZE = 8
SAVES_IN_FLIGHT = 2  # as RenderService: one batch saving while the next renders


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid`, its live descendants, and every descendant already reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended between listing and reading: its parent counts it once reaped
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def postgres_cpu_by_role(postmaster: int) -> dict[str, float]:
    """PostgreSQL's CPU seconds split by process title: client backends, autovacuum, background writers,
    and processes already ended (short-lived autovacuum workers, closed connections)."""
    try:
        root = psutil.Process(postmaster)
        children = root.children()
        times = root.cpu_times()
    except psutil.NoSuchProcess:
        return {}
    split = {"backends": 0.0, "autovacuum": 0.0, "background": times.user + times.system, "ended": 0.0}
    split["ended"] = times.children_user + times.children_system
    for child in children:
        try:
            title = " ".join(child.cmdline())
            used = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        role = "autovacuum" if "autovacuum" in title else "backends" if "127.0.0.1(" in title else "background"
        split[role] += used.user + used.system
    return split


@dataclass
class CentralProcesses:
    """The processes whose CPU is the control plane's cost: PostgreSQL, Redis and the API."""

    pids: dict[str, int]

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part (with its children)."""
        return {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}


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


STATEMENT_STATS = "pg_stat_statements"


def reset_statements(database_url: str) -> None:
    """Start counting statements afresh (pg_stat_statements), so the window's statements are what is read."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute(f"CREATE EXTENSION IF NOT EXISTS {STATEMENT_STATS}")
        db.execute("SELECT pg_stat_statements_reset()")


def top_statements(database_url: str, images: int, limit: int = 8) -> list[dict]:
    """The statements that took the most server time since the reset: calls and microseconds per image."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        rows = db.execute(
            f"SELECT query, calls, total_exec_time FROM {STATEMENT_STATS} "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY total_exec_time DESC LIMIT %s",
            (limit,),
        ).fetchall()
    images = max(images, 1)
    return [
        {
            "statement": " ".join(query.split())[:140],
            "calls_per_image": round(calls / images, 3),
            "exec_us_per_image": round(total * 1000 / images, 1),
        }
        for query, calls, total in rows
    ]


def succeeded_count(sessions) -> int:
    """Images recorded as succeeded so far."""
    with sessions() as session:
        return session.scalar(select(func.count()).where(Image.status == ImageStatus.SUCCEEDED)) or 0


def submit(farm: BenchFarm, images: int, per_job: int = 10_000) -> list[int]:
    """Submit `images` images through the API, in jobs of at most `per_job`; returns the job ids."""
    ids = []
    while images > 0:
        count = min(images, per_job)
        prompts = [f"central cost prompt {i}" for i in range(max(1, count // 100))]
        body = {"prompts": prompts, "num_images": count // len(prompts), "model": MODEL, "steps": 1}
        response = requests.post(f"{farm.url}/api/v1/jobs", json=body, timeout=300)
        response.raise_for_status()
        ids.append(response.json()["id"])
        images -= len(prompts) * body["num_images"]
    return ids


class Pollers:
    """`count` clients polling job status (`?images=0`) every `interval` seconds; records latencies."""

    def __init__(self, url: str, job_id: int, count: int, interval: float):
        self.url, self.job_id, self.count, self.interval = url, job_id, count, interval
        self.latencies: list[float] = []
        self.failures = 0
        self.not_modified = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, daemon=True) for _ in range(count)]

    def start(self) -> Pollers:
        """Begin polling."""
        for thread in self._threads:
            thread.start()
        return self

    def _poll(self) -> None:
        session = requests.Session()
        mine = []
        etag = None
        # Start spread over one interval, as independent clients would.
        self._stop.wait(random.uniform(0, self.interval))
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                # A well-behaved client sends back the ETag it has; an unchanged status costs a 304.
                headers = {"If-None-Match": etag} if etag else {}
                answer = session.get(f"{self.url}/api/v1/jobs/{self.job_id}?images=0", headers=headers, timeout=30)
                if answer.status_code == 304:
                    self.not_modified += 1
                else:
                    answer.raise_for_status()
                    etag = answer.headers.get("ETag")
                mine.append(time.perf_counter() - started)
            except requests.RequestException:
                self.failures += 1
            self._stop.wait(self.interval)
        self.latencies.extend(mine)

    def stop(self) -> dict:
        """Stop and summarise: requests, median and p99 in ms."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        latencies = sorted(self.latencies)
        if not latencies:
            return {"pollers": self.count, "requests": 0, "failures": self.failures}
        return {
            "pollers": self.count,
            "interval_seconds": self.interval,
            "requests": len(latencies),
            "not_modified": self.not_modified,
            "failures": self.failures,
            "median_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2),
        }


def poll_for(url: str, job_id: int, count: int, interval: float, seconds: float) -> dict:
    """Run `count` pollers for `seconds` and summarise (the body of the latency process)."""
    pollers = Pollers(url, job_id, count, interval).start()
    time.sleep(seconds)
    return pollers.stop()


def poll_server_time(postgres: PostgresServer, work_dir: Path, images: int = 10_000, polls: int = 200) -> dict:
    """Median in-process time of one status poll of an `images`-image job: computed, cached, and 304.

    Runs the Flask app in this process (no HTTP, no gunicorn), one request at a time, so the
    figure is the API's and the database's work per poll without queueing for the cores.
    """
    from api import create_app
    from sdfarm.migrate import upgrade
    from sdfarm.redis_server import RedisServer

    redis_server = RedisServer(work_dir / "poll-redis").start()
    try:
        with scratch_database(postgres.url) as database_url:
            upgrade(database_url)
            settings = Settings(
                data_dir=work_dir / "poll",
                database_url=database_url,
                redis_url=redis_server.url,
                model=MODEL,
                max_images_per_job=images,
                rate_limit_per_minute=0,
                auth="off",
            )
            app = create_app(settings)
            client = app.test_client()
            body = {"prompts": [f"p{i}" for i in range(100)], "num_images": images // 100, "model": MODEL}
            job_id = client.post("/api/v1/jobs", json=body).json["id"]
            url = f"/api/v1/jobs/{job_id}?images=0"
            cache = app.extensions["sdfarm"].status_cache
            figures = {}
            for label, seconds, conditional in (
                ("computed", 0.0, False),
                ("cached", 3600.0, False),
                ("304", 3600.0, True),
            ):
                cache.seconds = seconds
                etag = client.get(url).headers["ETag"]
                headers = {"If-None-Match": etag} if conditional else {}
                took = []
                for _ in range(polls):
                    started = time.perf_counter()
                    client.get(url, headers=headers)
                    took.append(time.perf_counter() - started)
                figures[f"{label}_ms"] = round(statistics.median(took) * 1000, 2)
            app.extensions["sdfarm"].engine.dispose()
            return {"job_images": images, **figures}
    finally:
        redis_server.stop()


def measure_scale(
    postgres: PostgresServer,
    work_dir: Path,
    gpus: int,
    seconds: float,
    warmup: float,
    poll_clients: int,
    latency_pollers: int,
    settings_overrides: dict,
) -> dict:
    """Central CPU per recorded image with `gpus` simulated GPUs, on a fresh database, Redis and API."""
    nominal = gpus * GPU_BATCH_SIZE / GPU_BATCH_SECONDS
    with scratch_database(postgres.url) as database_url:
        farm = BenchFarm(
            work_dir,
            database_url,
            model=MODEL,
            max_batch=GPU_BATCH_SIZE,
            rate_limit_per_minute=0,
            max_images_per_job=100_000,
            max_queued_per_key=10_000_000,
            **settings_overrides,
        )
        object_dir = Path(
            tempfile.mkdtemp(prefix="sdfarm-central-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
        )
        fleet = None
        try:
            farm.start_api(processes=2)
            central = CentralProcesses(
                {"postgres": postgres.postmaster_pid(), "redis": farm.redis.process.pid, "api": farm.api.process.pid}
            )
            # Enough work for the whole run even if the fleet reached its nominal rate.
            images = int(min(nominal * (seconds + warmup + 5) * 1.2, 60_000)) // 100 * 100 or 100
            before = central.cpu()
            started = time.monotonic()
            job_ids = submit(farm, images)
            submit_seconds = time.monotonic() - started
            after = central.cpu()
            submit_ms = {name: (after[name] - before[name]) * 1000 / images for name in before}

            fleet = SimulatedFleet(farm.settings, gpus, object_dir)
            done = threading.Event()
            runner = threading.Thread(target=lambda: asyncio.run(fleet.run(done)), name="fleet")
            runner.start()
            clients = Pollers(farm.url, job_ids[0], poll_clients, 1.0).start() if poll_clients else None
            # Warm up until most GPUs have saved a batch (a big fleet takes a while to get going).
            settle_by = time.monotonic() + max(warmup, 90.0)
            time.sleep(warmup)
            while fleet.counters.batches < gpus // 2 and time.monotonic() < settle_by:
                time.sleep(0.5)
            warmed = round(time.monotonic() - started - submit_seconds, 1)
            me = psutil.Process()
            reset_statements(database_url)
            first_roles = postgres_cpu_by_role(postgres.postmaster_pid())
            first_count, first_cpu, first_fleet = succeeded_count(farm.sessions), central.cpu(), me.cpu_times()
            first_machine = psutil.cpu_times()
            first_counters = dict(vars(fleet.counters))
            first_wall = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - first_wall
            last_count, last_cpu, last_fleet = succeeded_count(farm.sessions), central.cpu(), me.cpu_times()
            last_roles = postgres_cpu_by_role(postgres.postmaster_pid())
            last_machine = psutil.cpu_times()
            statements = top_statements(database_url, last_count - first_count)
            counters = {
                key: value - first_counters[key] for key, value in vars(fleet.counters).items() if key != "errors"
            }
            latency = None
            if latency_pollers:
                # In a process of their own: in this one they would wait for the fleet's GIL, not the API.
                spawn = multiprocessing.get_context("spawn")
                with spawn.Pool(1) as pool:
                    latency = [
                        pool.apply(poll_for, (farm.url, job_ids[0], latency_pollers, interval, min(10.0, seconds)))
                        for interval in (1.0, 0.0)
                    ]
            polled = clients.stop() if clients else None
            done.set()
            runner.join()
        finally:
            if fleet is not None:
                fleet.close()
            farm.close()
            farm.sessions.kw["bind"].dispose()
            import shutil

            shutil.rmtree(object_dir, ignore_errors=True)
    recorded = last_count - first_count
    central_seconds = {name: last_cpu[name] - first_cpu[name] for name in first_cpu}
    fleet_seconds = (last_fleet.user + last_fleet.system) - (first_fleet.user + first_fleet.system)
    machine_busy = _busy(last_machine) - _busy(first_machine)
    per_image = {name: round(value * 1000 / max(recorded, 1), 3) for name, value in central_seconds.items()}
    total_ms = sum(central_seconds.values()) * 1000 / max(recorded, 1)
    return {
        "simulated_gpus": gpus,
        "seconds": round(wall, 1),
        "warmup_seconds": warmed,
        "nominal_images_per_second": round(nominal, 1),
        "recorded_images_per_second": round(recorded / wall, 1),
        "recorded_images": recorded,
        "central_ms_per_image": round(total_ms, 3),
        "central_ms_per_image_by_part": per_image,
        "postgres_ms_per_image_by_role": {
            role: round((last_roles.get(role, 0) - first_roles.get(role, 0)) * 1000 / max(recorded, 1), 3)
            for role in first_roles
        },
        "central_cores_busy": {name: round(value / wall, 3) for name, value in central_seconds.items()},
        "fleet_cores_busy": round(fleet_seconds / wall, 3),
        "machine_cores_busy": round(machine_busy / wall, 2),
        "machine_cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "submit": {
            "images": images,
            "seconds": round(submit_seconds, 2),
            "central_ms_per_image": round(sum(submit_ms.values()), 3),
        },
        "fleet_calls": counters,
        "top_statements": statements,
        "fleet_errors": fleet.counters.errors[:5] if fleet else [],
        "status_poll_clients": polled,
        "status_poll_latency": latency,
    }


def _busy(times) -> float:
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def run(
    work_dir: Path,
    gpu_counts=(10, 100, 1000),
    seconds: float = 20.0,
    warmup: float = 4.0,
    poll_clients: int = 1,
    latency_pollers: int = 0,
    settings_overrides: dict | None = None,
    report=print,
    durable: bool = True,
) -> dict:
    """Central cost at each fleet size, on one private PostgreSQL server (fsync on, as in production)."""
    postgres = PostgresServer(durable=durable, options={"shared_preload_libraries": STATEMENT_STATS}).start()
    results: dict = {
        "gpu_batch_seconds": GPU_BATCH_SECONDS,
        "gpu_batch_size": GPU_BATCH_SIZE,
        "postgres_fsync": durable,
        "scales": [],
    }
    try:
        if latency_pollers:
            results["poll_server_time"] = poll_server_time(postgres, work_dir)
            report(f"status poll, in process, one at a time: {results['poll_server_time']}")
        for gpus in gpu_counts:
            figures = measure_scale(
                postgres,
                work_dir / f"gpus-{gpus}",
                gpus,
                seconds,
                warmup,
                poll_clients,
                latency_pollers,
                settings_overrides or {},
            )
            results["scales"].append(figures)
            report(summary_line(figures))
    finally:
        postgres.stop()
    return results


def summary_line(figures: dict) -> str:
    """One human line per fleet size."""
    parts = ", ".join(f"{name} {value}" for name, value in figures["central_ms_per_image_by_part"].items())
    line = (
        f"{figures['simulated_gpus']:>5} simulated GPUs: {figures['central_ms_per_image']} ms central CPU per image "
        f"({parts}); {figures['recorded_images_per_second']} of {figures['nominal_images_per_second']} images/s; "
        f"fleet {figures['fleet_cores_busy']} cores, machine {figures['machine_cores_busy']} of "
        f"{figures['machine_cores']} busy"
    )
    for latency in figures["status_poll_latency"] or []:
        pace = f"every {latency['interval_seconds']:g} s" if latency.get("interval_seconds") else "flat out"
        line += (
            f"; {latency['pollers']} pollers {pace}: median {latency.get('median_ms')} ms, "
            f"p99 {latency.get('p99_ms')} ms"
        )
    return line
