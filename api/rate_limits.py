"""Per-key limits: requests per minute (in Redis, shared by every API process) and queued images."""

from __future__ import annotations

import logging
import math
import time

import redis
from flask import g
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.farm import farm
from models.image import Image, ImageStatus

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


def check_rate_limit() -> None:
    """before_request: 429 with Retry-After once a key used up this minute's requests."""
    key = g.get("api_key")
    limit = farm().settings.rate_limit_per_minute
    if key is None or limit == 0:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    counter = f"sdfarm:rate:{key.id}:{window}"
    try:
        pipeline = farm().queue.redis.pipeline()
        pipeline.incr(counter)
        pipeline.expire(counter, WINDOW_SECONDS * 2)
        count = pipeline.execute()[0]
    except redis.RedisError as error:
        # Fail open: a broker outage should not also take the read API down.
        log.warning("rate limit not checked (Redis: %s)", error)
        return
    if count > limit:
        retry_after = math.ceil((window + 1) * WINDOW_SECONDS - now)
        raise ApiError(
            429,
            f"rate limit: {limit} requests per minute for this key; retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )


def check_queued_cap(session: Session, owner_key_id: int | None, new_images: int) -> None:
    """429 when this job would take the key past its cap on images waiting or running."""
    if owner_key_id is None:
        return
    cap = farm().settings.max_queued_per_key
    waiting = session.scalar(
        select(func.count()).where(
            Image.owner_key_id == owner_key_id, Image.status.in_([ImageStatus.QUEUED, ImageStatus.RUNNING])
        )
    )
    if waiting + new_images > cap:
        raise ApiError(
            429,
            f"this key has {waiting} images waiting; with {new_images} more it would pass its cap of {cap}. "
            "Wait for some to finish or cancel a job.",
            headers={"Retry-After": "60"},
        )
