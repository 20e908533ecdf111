"""Status polls under load, for the control-plane bench: clients polling a job over HTTP, and one
poll's own cost measured in process."""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

import requests

from models.settings import Settings
from sdfarm.postgres_server import PostgresServer
from sdfarm.scratch_database import scratch_database


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


def poll_server_time(
    postgres: PostgresServer, work_dir: Path, model: str, images: int = 10_000, polls: int = 200
) -> dict:
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
                model=model,
                max_images_per_job=images,
                rate_limit_per_minute=0,
                auth="off",
            )
            app = create_app(settings)
            client = app.test_client()
            body = {"prompts": [f"p{i}" for i in range(100)], "num_images": images // 100, "model": model}
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
