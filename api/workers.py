"""`/api/v1/workers`: every worker's last heartbeat, marked online or offline (others' jobs hidden)."""

from __future__ import annotations

from datetime import timedelta

from flask import Response, jsonify
from sqlalchemy import select

from api.farm import db, farm
from api.schemas import WorkerList, WorkerOut
from api.visibility import own_job_ids
from models.base import utcnow
from models.worker_record import WorkerRecord


def list_workers() -> Response:
    """GET /api/v1/workers: online means a heartbeat within SDFARM_WORKER_OFFLINE_SECONDS."""
    cutoff = utcnow() - timedelta(seconds=farm().settings.worker_offline_seconds)
    records = list(db().scalars(select(WorkerRecord).order_by(WorkerRecord.name)))
    # A key that is not an admin sees what a worker renders only when it renders that key's job.
    visible = own_job_ids(db(), (record.current_job_id for record in records))
    workers = [
        WorkerOut(
            name=record.name,
            host=record.host,
            pid=record.pid,
            device=record.device,
            gpu_name=record.gpu_name,
            gpu_memory_mb=record.gpu_memory_mb,
            model=record.model,
            state=record.state if record.last_seen >= cutoff else "offline",
            online=record.last_seen >= cutoff and record.state != "stopped",
            current_job_id=record.current_job_id if visible is None or record.current_job_id in visible else None,
            images_done=record.images_done,
            images_per_second=record.images_per_second,
            model_loads=record.model_loads,
            configuration=record.configuration,
            started_at=record.started_at,
            last_seen=record.last_seen,
        )
        for record in records
    ]
    return jsonify(WorkerList(workers=workers).model_dump(mode="json"))
