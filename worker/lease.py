"""Keeps a claim alive while its batch renders and is saved, and publishes its progress."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import lifecycle

log = logging.getLogger(__name__)


def renewal_interval(lease_seconds: float) -> float:
    """Seconds between two renewals of a lease of `lease_seconds`: a third of it, so two renewals
    in a row may fail (a database blip) before the lease runs out; a batch that ends sooner never renews."""
    return lease_seconds / 3


class LeaseKeeper:
    """A background thread that renews one lease every third of its length.

    The render loop only sets `progress` (a float); the database write happens here,
    so the denoising loop never waits on the database.
    """

    def __init__(self, sessions: sessionmaker[Session], token: str, lease_seconds: float):
        self.sessions = sessions
        self.token = token
        self.lease_seconds = lease_seconds
        self.progress = 0.0
        # Set when a renewal finds nothing held: the batch was canceled or taken back, so
        # rendering it further would only waste the GPU.
        self.lost = threading.Event()
        # Held while renewing; the saver holds it while recording the batch, so a renewal and the
        # batch's save never update the same rows at once (two multi-row UPDATEs can deadlock).
        self.renewing = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{token[:8]}", daemon=True)

    def start(self) -> LeaseKeeper:
        """Begin renewing in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the batch is saved, failed, or handed back)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = renewal_interval(self.lease_seconds)
        while not self._stop.wait(interval):
            try:
                with self.renewing:
                    held = lifecycle.renew(
                        self.sessions,
                        token=self.token,
                        lease_seconds=self.lease_seconds,
                        progress=round(self.progress, 4),
                    )
                if held == 0:  # nothing held any more: saved, failed, canceled, or taken back by the reaper
                    self.lost.set()
                    return
            except OperationalError as error:
                # Keep trying: the lease is long enough to ride out a short database blip.
                log.warning("could not renew lease %s: %s", self.token[:8], error)
