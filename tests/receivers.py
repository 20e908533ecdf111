"""Starting the webhook receiver process (tests/webhook_receiver.py) and reading what it saw."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sdfarm.farm_processes import REPO


class Receiver:
    """A receiver process on a loopback port; `requests()` reads its log."""

    def __init__(self, secret: str, log: Path, fails: int = 0):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.webhook_receiver", secret, str(log), str(fails)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/hooks/sdfarm?source=test"

    def requests(self) -> list[dict]:
        """Every request received so far."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict]:
        """Wait until `count` requests have come in."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.requests()
            if len(seen) >= count:
                return seen
            time.sleep(0.1)
        raise TimeoutError(f"receiver saw {len(self.requests())} requests, expected {count}")

    def stop(self) -> None:
        """End the process."""
        self.process.terminate()
        self.process.wait(timeout=10)
