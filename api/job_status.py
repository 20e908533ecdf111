"""A job's status as clients poll it: computed at most once a `status_cache_seconds` per process, with an ETag.

Counting a big job's images and estimating its queue position cost milliseconds of database time;
fifty clients polling one job should cost that once per interval, not fifty times. Every request is
still checked against the caller's key, from the owner kept beside the cached body.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class JobStatus:
    """One rendering of a job's status: its owner (for the tenant check), the JSON body and its ETag."""

    owner_key_id: int | None
    body: dict
    etag: str
    expires: float


class StatusCache:
    """Recently computed job statuses, keyed by (job id, with images); thread-safe, bounded in size."""

    def __init__(self, seconds: float, size: int = 1024):
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[tuple[int, bool], JobStatus] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: int, with_images: bool) -> JobStatus | None:
        """The cached status if it is still fresh."""
        with self._lock:
            entry = self._entries.get((job_id, with_images))
        if entry is None or entry.expires <= time.monotonic():
            return None
        return entry

    def put(self, job_id: int, with_images: bool, owner_key_id: int | None, body: dict) -> JobStatus:
        """Remember a freshly computed body (kept only when caching is on) and return it with its ETag."""
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
        etag = hashlib.blake2b(encoded, digest_size=12).hexdigest()
        entry = JobStatus(owner_key_id, body, etag, time.monotonic() + self.seconds)
        if self.seconds > 0:
            with self._lock:
                self._entries[(job_id, with_images)] = entry
                self._entries.move_to_end((job_id, with_images))
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return entry

    def forget(self, job_id: int) -> None:
        """Drop a job's entries (after a change made through this process, such as a cancel)."""
        with self._lock:
            for key in [(job_id, False), (job_id, True)]:
                self._entries.pop(key, None)
