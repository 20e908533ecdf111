"""`GET /api/v1/jobs/<id>/events`: a job's progress and image completions as server-sent events.

Under gunicorn's threaded workers a stream holds one thread for as long as it is open, so streams
are few per process (`events_streams_per_process`; 503 with Retry-After beyond, and the client polls
instead) and short (`events_max_seconds`; the `retry:` line makes EventSource reconnect, and
Last-Event-ID resumes the image events where they stopped). Each tick reads the job's cached status
(api/job_status.py), so many streams of one job cost one status computation per interval, and the
image rows are read only when the count of finished images has grown.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

from flask import Response, current_app, request, stream_with_context
from sqlalchemy import and_, or_, select

from api.errors import ApiError
from api.farm import close_db, db, farm
from api.jobs import job_status
from models.image import FINAL_STATUSES, Image, ImageStatus

TICK_SECONDS = 1.0
IMAGES_PER_TICK = 500
RECONNECT_MS = 2000
FINAL_JOB = {"succeeded", "failed", "canceled"}

_slots_lock = threading.Lock()
_open_streams: dict[int, int] = {}  # per app (id), how many streams this process serves now


def job_events(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/events: `progress` (the job as GET /api/v1/jobs/<id>?images=0 answers it),
    `image` (each image that reached a final state) and `end` (the job is final) events."""
    first = job_status(job_id, False)  # 404 before anything streams, for a job the caller may not see
    cursor = _parse_event_id(request.headers.get("Last-Event-ID", ""))
    if not _take_slot():
        raise ApiError(
            503,
            "too many event streams open on this server; poll GET /api/v1/jobs/<id> instead",
            headers={"Retry-After": "5"},
        )
    app_key = id(current_app._get_current_object())
    settings = farm().settings

    def stream():
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            deadline = time.monotonic() + settings.events_max_seconds
            last_etag, finished_seen = None, -1
            position = cursor
            status = first
            while True:
                if status.etag != last_etag:
                    last_etag = status.etag
                    yield _event("progress", status.body)
                body = status.body
                finished = body["succeeded"] + body["failed"] + body["canceled"]
                if finished != finished_seen:
                    rows = _finished_since(job_id, position)
                    for row in rows:
                        position = (row.finished_at, row.id)
                        yield _event("image", _image_event(row), event_id=_event_id(position))
                    if len(rows) < IMAGES_PER_TICK:  # else more remain: read again at the next tick
                        finished_seen = finished
                    close_db()  # release the connection between ticks
                if body["status"] in FINAL_JOB and finished == finished_seen:
                    yield _event("end", {"status": body["status"]})
                    return
                if time.monotonic() >= deadline:
                    return  # the client reconnects after `retry` and resumes from Last-Event-ID
                time.sleep(TICK_SECONDS)
                status = job_status(job_id, False)
                close_db()
        finally:
            close_db()
            _give_slot(app_key)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers=headers)


def _take_slot() -> bool:
    key = id(current_app._get_current_object())
    with _slots_lock:
        if _open_streams.get(key, 0) >= farm().settings.events_streams_per_process:
            return False
        _open_streams[key] = _open_streams.get(key, 0) + 1
        return True


def _give_slot(key: int) -> None:
    with _slots_lock:
        _open_streams[key] = max(0, _open_streams.get(key, 0) - 1)


def _finished_since(job_id: int, position: tuple[datetime, int] | None) -> list:
    """The job's images that reached a final state after `position` (finished_at, id), oldest first."""
    query = select(
        Image.id, Image.index, Image.status, Image.error, Image.object_key, Image.thumb_key, Image.finished_at
    ).where(Image.job_id == job_id, Image.status.in_(FINAL_STATUSES), Image.finished_at.is_not(None))
    if position is not None:
        at, last_id = position
        query = query.where(or_(Image.finished_at > at, and_(Image.finished_at == at, Image.id > last_id)))
    return list(db().execute(query.order_by(Image.finished_at, Image.id).limit(IMAGES_PER_TICK)))


def _image_event(row) -> dict:
    done = row.status == ImageStatus.SUCCEEDED and row.object_key
    return {
        "id": row.id,
        "index": row.index,
        "status": row.status,
        "error": row.error,
        "url": f"/api/v1/images/{row.id}/file" if done else None,
        "thumbnail_url": f"/api/v1/images/{row.id}/thumbnail" if done and row.thumb_key else None,
        "finished_at": row.finished_at.isoformat(),
    }


def _event(name: str, data: dict, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event_id(position: tuple[datetime, int]) -> str:
    at, image_id = position
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{(at - EPOCH) // timedelta(microseconds=1)}-{image_id}"


def _parse_event_id(value: str) -> tuple[datetime, int] | None:
    """Last-Event-ID as sent back by EventSource; anything malformed restarts from the job's first image."""
    micros, _, image_id = value.strip()[:40].partition("-")
    if not (micros.isdigit() and image_id.isdigit()):
        return None
    if len(micros) > 17:
        return None
    return EPOCH + timedelta(microseconds=int(micros)), int(image_id)
