"""A worker's images/s: measured over its last minute of work, and still right while it waits for more."""

from __future__ import annotations

from worker import stats as stats_module
from worker.stats import WorkerStats


class Clock:
    """A settable time.monotonic()."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_images_over_the_time_spent_making_them_and_survives_idle(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(stats_module.time, "monotonic", clock)
    stats = WorkerStats()
    assert stats.images_per_second() == 0.0
    for _ in range(6):  # six batches of 4 images, 2 s each
        started = clock.now
        clock.now += 2.0
        stats.finished(4, started)
    assert stats.images_per_second() == 2.0
    clock.now += 600  # ten minutes without work: still what the worker does when it works
    assert stats.images_per_second() == 2.0
    started = clock.now
    clock.now += 1.0
    stats.finished(4, started)  # a new, faster minute of work replaces the old one
    assert stats.images_per_second() == 4.0
