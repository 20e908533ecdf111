"""Control plane: accepting a huge job, status polls under load, and bookkeeping throughput
with many workers whose GPU is SIMULATED by a fixed sleep (bench/sim_runner.py)."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import func, select

from bench.local_farm import BenchFarm
from models.image import Image

SIM_RUNNER = "bench.sim_runner:SleepRunner"


def accept_large_job(farm: BenchFarm, images: int = 10_000) -> float:
    """Seconds for POST /api/v1/jobs to accept (validate, store, enqueue) one job of `images`."""
    prompts = [f"prompt number {i}" for i in range(100)]
    started = time.perf_counter()
    response = requests.post(
        f"{farm.url}/api/v1/jobs", json={"prompts": prompts, "num_images": images // 100, "model": "sim"}, timeout=120
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def poll_latency(farm: BenchFarm, job_id: int, pollers: int = 50, seconds: float = 10.0) -> dict:
    """Median and p99 latency of GET /api/v1/jobs/<id> with `pollers` clients polling flat out."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def poll() -> None:
        session = requests.Session()
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            session.get(f"{farm.url}/api/v1/jobs/{job_id}?images=0", timeout=30).raise_for_status()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=poll) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "pollers": pollers,
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / seconds, 1),
        "median_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def bookkeeping_throughput(farm: BenchFarm, workers: int, images: int) -> dict:
    """Images/s the farm records with `workers` simulated GPUs; the sleep is the only 'rendering'."""
    started = time.time()
    job_spec = {"prompts": [f"prompt {i}" for i in range(images // 10)], "num_images": 10, "model": "sim", "steps": 1}
    response = requests.post(f"{farm.url}/api/v1/jobs", json=job_spec, timeout=120)
    response.raise_for_status()
    job = farm.wait_for_job(response.json()["id"], interval=0.5)
    with farm.sessions() as session:
        first, last = session.execute(
            select(func.min(Image.started_at), func.max(Image.finished_at)).where(Image.job_id == job["id"])
        ).one()
    span = last.timestamp() - first.timestamp()
    return {
        "workers": workers,
        "images": images,
        "succeeded": job["succeeded"],
        "images_per_second": round(images / span, 1),
        "submit_to_done_seconds": round(last.timestamp() - started, 2),
    }


def run(
    work_dir: Path,
    sim_model_dir: Path,
    database_url: str | None,
    worker_counts=(1, 8, 32),
    sim_batch_seconds: float = 0.05,
    max_batch: int = 8,
) -> dict:
    """All control-plane figures on one database."""
    results: dict = {
        "database": (database_url or "sqlite").split(":")[0],
        "simulated_batch_seconds": sim_batch_seconds,
        "max_batch": max_batch,
        "bookkeeping": [],
    }
    farm = BenchFarm(
        work_dir,
        database_url,
        models_dir=sim_model_dir.parent,
        model="sim",
        max_batch=max_batch,
        runner=SIM_RUNNER,
        rate_limit_per_minute=0,
    )
    try:
        farm.start_api(processes=4)
        results["accept_10000_images_seconds"] = round(accept_large_job(farm), 3)
        with farm.sessions() as session:
            job_id = session.scalar(select(func.max(Image.job_id)))
        results["status_poll"] = poll_latency(farm, job_id)
        requests.post(f"{farm.url}/api/v1/jobs/{job_id}/cancel", timeout=60)
        for count in worker_counts:
            farm.start_workers(count, SDFARM_SIM_BATCH_SECONDS=str(sim_batch_seconds))
            results["bookkeeping"].append(bookkeeping_throughput(farm, count, images=max(400, count * 60) // 10 * 10))
            farm.stop_workers()
    finally:
        farm.close()
    return results
