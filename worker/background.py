"""One small runner for the supervisor's background tasks (reaper, webhook deliveries, exports).

A task is anything with `run_once()`; the loop calls it every `interval` seconds in a daemon thread
and survives its errors, since the database or broker may be down for a while. Tasks that must not
run twice at once across hosts (a delivery, an export) claim their work in the database themselves.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger(__name__)


class BackgroundTask(Protocol):
    """One pass of some background work."""

    def run_once(self) -> object:
        """Do whatever is due now."""


class BackgroundLoop:
    """Runs `task.run_once()` every `interval` seconds until stopped."""

    def __init__(self, task: BackgroundTask, interval: float, name: str):
        self.task = task
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (a pass in progress finishes, or is cut short when the process exits)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.task.run_once()
            except Exception as error:  # the broker or database may be down; try again next round
                log.warning("%s pass failed: %s", self.name, error)
