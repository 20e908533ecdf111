"""Heartbeats: every few seconds a worker upserts its row in the `workers` table."""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.worker_record import WorkerRecord
from worker.gpu_usage import GpuUsage
from worker.stats import WorkerStats

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread that reports this worker's identity, device and stats."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        name: str,
        model: str,
        stats: WorkerStats,
        interval: float,
        device_info: dict | None = None,
    ):
        self.sessions = sessions
        self.name = name
        self.model = model
        self.stats = stats
        self.interval = interval
        self.device_info = device_info or {"device": "cpu"}
        self.gpu = GpuUsage(self.device_info.get("device", "cpu"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Beat now and then every `interval` seconds."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and mark the worker stopped."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.beat(state="stopped")

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(self.interval):
                return

    def beat(self, state: str | None = None) -> None:
        """Write one heartbeat row."""
        snapshot = self.stats.snapshot()
        values = dict(
            # The name's host part: SDFARM_HOST_NAME where set, so two containers on one machine differ.
            host=self.name.rpartition("@")[2] or socket.gethostname(),
            pid=os.getpid(),
            device=self.device_info.get("device", "cpu"),
            gpu_name=self.device_info.get("gpu_name"),
            gpu_memory_mb=self.device_info.get("gpu_memory_mb"),
            model=self.model,
            state=state or snapshot["state"],
            current_job_id=snapshot["current_job_id"],
            images_done=snapshot["images_done"],
            images_per_second=snapshot["images_per_second"],
            model_loads=snapshot["model_loads"],
            configuration=snapshot["configuration"],
            last_seen=utcnow(),
            **self.gpu.read(),
        )
        try:
            with self.sessions() as session:
                # The usual beat is one UPDATE of this process's own row; the row is read only
                # when it is missing or belongs to an earlier process of the same name.
                beat = update(WorkerRecord).where(WorkerRecord.name == self.name, WorkerRecord.pid == values["pid"])
                if session.execute(beat.values(values)).rowcount == 1:
                    session.commit()
                    return
                record = session.get(WorkerRecord, self.name)
                if record is None or record.pid != values["pid"]:
                    if record is None:
                        record = WorkerRecord(name=self.name, started_at=utcnow(), **values)
                        session.add(record)
                    else:
                        record.started_at = utcnow()
                for key, value in values.items():
                    setattr(record, key, value)
                session.commit()
        except SQLAlchemyError as error:
            log.warning("heartbeat failed: %s", error)
