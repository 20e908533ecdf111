"""Batch histograms kept in Redis, so every worker process on every machine adds to the same series.

Workers add one observation per rendered batch; the API's /metrics reads the hashes at scrape time.
Nothing here is in the database: a batch's timing is not worth a write on the queue's hot path.
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

BATCH_SECONDS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
KEY_PREFIX = "sdfarm:metrics:"


def histogram_key(name: str, model: str) -> str:
    """The Redis hash of one histogram series."""
    return f"{KEY_PREFIX}{name}:{model}"


def _observe(pipeline, name: str, model: str, buckets: tuple[float, ...], value: float) -> None:
    key = histogram_key(name, model)
    for bound in buckets:
        if value <= bound:
            pipeline.hincrby(key, f"le:{bound:g}", 1)
    pipeline.hincrby(key, "count", 1)
    pipeline.hincrbyfloat(key, "sum", value)


def record_batch(client: redis.Redis, model: str, seconds: float, size: int) -> None:
    """One rendered batch: its render time and its size (a Redis outage only loses the observation)."""
    try:
        pipeline = client.pipeline(transaction=False)
        _observe(pipeline, "batch_render_seconds", model, BATCH_SECONDS_BUCKETS, seconds)
        _observe(pipeline, "batch_size", model, BATCH_SIZE_BUCKETS, size)
        pipeline.execute()
    except redis.RedisError as error:
        log.debug("batch metrics not recorded: %s", error)


def read_histograms(client: redis.Redis, name: str) -> dict[str, dict[str, float]]:
    """Every model's series of histogram `name`: {model: {"le:<bound>": n, "count": n, "sum": s}}."""
    prefix = histogram_key(name, "")
    series = {}
    for key in client.scan_iter(match=prefix + "*", count=100):
        key = key.decode() if isinstance(key, bytes) else key
        fields = client.hgetall(key)
        series[key[len(prefix) :]] = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in fields.items()}
    return series
