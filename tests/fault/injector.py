"""Firing the planned faults at a running farm, and timing how long the farm takes to recover.

Recovery, per kind:
- child_kill, worker_kill: until no image the killed process held is still `running` under its
  dead lease (the reaper took it back, or it was already finished) and a replacement process is up;
- redis_restart, postgres_restart: until the main job has finished `max_batch` more images;
- api_restart: until the new API answers /healthz;
- cancel_other_job: until every worker that was rendering the canceled job has claimed other work
  (its batch stopped at the next lease renewal; the rows were canceled at once).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Image
from models.settings import Settings
from sdfarm.farm_processes import ApiProcess, WorkerFleet, wait_until
from sdfarm.redis_server import RedisServer
from tests.fault.harness import restart_redis
from tests.fault.postgres_server import PostgresServer
from tests.fault.schedule import Fault

RECOVERY_TIMEOUT = 300.0


@dataclass
class FaultInjector:
    """The farm's parts, the main job, and what has been done to them so far."""

    settings: Settings
    sessions: sessionmaker[Session]
    fleet: WorkerFleet
    api: ApiProcess
    redis: RedisServer
    postgres: PostgresServer
    job_id: int
    images: int
    steps: int
    worker_names: list[str]
    canceled_jobs: list[int] = field(default_factory=list)

    def succeeded(self) -> int:
        """Images of the main job finished so far, as a client sees them."""
        return self.api.get(f"/api/v1/jobs/{self.job_id}?images=0")["succeeded"]

    def job_running(self) -> bool:
        """Whether the main job has not ended yet."""
        return self.api.get(f"/api/v1/jobs/{self.job_id}?images=0")["status"] in {"queued", "running"}

    def fire(self, fault: Fault) -> dict:
        """Wait for the fault's moment, fire it, wait for recovery; the record for the report."""
        wait_until(lambda: self.succeeded() >= fault.at_done, 1800, f"{fault.at_done} images done", 0.25)
        record = {"kind": fault.kind, "planned_at": fault.at_done, "at_done": self.succeeded()}
        record["during_run"] = self.job_running()
        target, recovery = getattr(self, fault.kind)(fault.target)
        record.update(target=target, recovery_seconds=round(recovery, 2))
        print(f"fault {fault.kind} at {record['at_done']} on {target}: recovered in {recovery:.2f} s", flush=True)
        return record

    # --- the faults -------------------------------------------------------------------------------

    def child_kill(self, target: int) -> tuple[str, float]:
        """SIGKILL the pool child of one worker, preferably while it renders."""
        name = self.worker_names[target]
        held = self._held_when_busy(name)
        child = self._process(name, "child")
        child.kill()

        def replaced() -> bool:
            current = self.fleet.celery_processes().get(name, {}).get("child")
            return current is not None and current.pid != child.pid and self._released(held)

        return name, wait_until(replaced, RECOVERY_TIMEOUT, f"{name} child replaced", 0.1)

    def worker_kill(self, target: int) -> tuple[str, float]:
        """SIGKILL a whole Celery worker (main process and child); the supervisor starts another."""
        name = self.worker_names[target]
        held = self._held_when_busy(name)
        self._process(name, "child")  # a worker the supervisor is still restarting is not up yet
        processes = self.fleet.celery_processes()[name]
        old_main = processes["main"]
        for process in processes.values():
            process.kill()
        recovery = wait_until(lambda: self._released(held), RECOVERY_TIMEOUT, f"leases of {name} released", 0.1)

        def restarted() -> bool:
            current = self.fleet.celery_processes().get(name, {})
            return "child" in current and current["main"].pid != old_main.pid

        wait_until(restarted, RECOVERY_TIMEOUT, f"{name} restarted by the supervisor", 0.2)
        return name, recovery

    def redis_restart(self, _target: int) -> tuple[str, float]:
        """Redis dies and comes back empty: every queued message is lost; the reaper re-publishes."""
        done = self.succeeded()
        self.redis = restart_redis(self.redis)
        return "redis", self._progress_after(done, "Redis restart")

    def postgres_restart(self, _target: int) -> tuple[str, float]:
        """PostgreSQL restarts (fast shutdown): every connection of every process is cut."""
        done = self.succeeded()
        self.postgres.restart()
        return "postgresql", self._progress_after(done, "PostgreSQL restart")

    def api_restart(self, _target: int) -> tuple[str, float]:
        """SIGKILL gunicorn and its workers, start it again on the same port."""
        started = time.monotonic()
        os.killpg(self.api.process.pid, signal.SIGKILL)
        self.api.process.wait()
        self.api.start()
        return "api", time.monotonic() - started

    def cancel_other_job(self, _target: int) -> tuple[str, float]:
        """Submit a small high-priority job and cancel it while its first batch renders."""
        body = {"prompts": ["another client's job"], "num_images": 8, "steps": self.steps, "priority": 9, "seed": 5}
        other = self.api.post("/api/v1/jobs", body)["id"]
        self.canceled_jobs.append(other)

        def rendering() -> bool:
            return self.api.get(f"/api/v1/jobs/{other}?images=0")["running"] > 0

        try:
            wait_until(rendering, 120, f"job {other} rendering", 0.05)
        except TimeoutError:
            pass  # cancel it queued then; still a cancel during the run
        with self.sessions() as session:
            renderers = set(
                session.scalars(select(Image.worker).where(Image.job_id == other, Image.status == "running")).all()
            )
        canceled_at = datetime.now(UTC)
        self._patient_post(f"/api/v1/jobs/{other}/cancel")
        started = time.monotonic()

        def freed() -> bool:
            with self.sessions() as session:
                claimed = session.scalars(
                    select(Image.worker).where(Image.worker.in_(renderers), Image.started_at > canceled_at)
                ).all()
            return set(claimed) == renderers

        wait_until(freed, RECOVERY_TIMEOUT, f"workers of job {other} free again", 0.05)
        return f"job {other}", time.monotonic() - started

    # --- helpers ----------------------------------------------------------------------------------

    def _process(self, name: str, role: str) -> psutil.Process:
        def present() -> bool:
            return role in self.fleet.celery_processes().get(name, {})

        wait_until(present, RECOVERY_TIMEOUT, f"{name} has a {role} process", 0.1)
        return self.fleet.celery_processes()[name][role]

    def _held_when_busy(self, name: str, timeout: float = 60.0) -> dict[int, str]:
        """The running images `name` holds (id: lease token), waiting a while for it to hold some."""
        held: dict[int, str] = {}

        def busy() -> bool:
            with self.sessions() as session:
                rows = session.execute(
                    select(Image.id, Image.lease_token).where(Image.worker == name, Image.status == "running")
                ).all()
            held.clear()
            held.update({row.id: row.lease_token for row in rows})
            return bool(held)

        try:
            wait_until(busy, timeout, f"{name} busy", 0.05)
        except TimeoutError:
            pass  # an idle victim is still a fault; there is just nothing to take back
        return held

    def _released(self, held: dict[int, str]) -> bool:
        """No image in `held` is still running under the lease it had."""
        if not held:
            return True
        with self.sessions() as session:
            rows = session.execute(
                select(Image.id, Image.lease_token).where(Image.id.in_(held), Image.status == "running")
            ).all()
        return not any(held[row.id] == row.lease_token for row in rows)

    def _progress_after(self, done: int, what: str) -> float:
        target = min(done + self.settings.max_batch, self.images)
        return wait_until(lambda: self.succeeded() >= target, RECOVERY_TIMEOUT, f"progress after {what}", 0.1)

    def _patient_post(self, path: str) -> dict:
        for _ in range(50):
            try:
                return self.api.post(path)
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"POST {path} kept failing")
