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
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import requests
from sqlalchemy import func, select

from bench.local_farm import BenchFarm, tree_cpu_seconds
from bench.simulated_fleet import GPU_BATCH_SECONDS, GPU_BATCH_SIZE, MODEL, SimulatedFleet
from bench.status_polls import Pollers, poll_for, poll_server_time
from models.image import Image, ImageStatus
from sdfarm.postgres_server import PostgresServer
from sdfarm.scratch_database import scratch_database


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
            results["poll_server_time"] = poll_server_time(postgres, work_dir, MODEL)
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
