"""`/api/v1/jobs`: submit, list, inspect and cancel bulk jobs."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import select

from api.auth import owner_id, owner_scope
from api.errors import ApiError
from api.farm import db, farm
from api.idempotency import submit_once
from api.init_images import multipart_job
from api.job_status import JobStatus
from api.pagination import next_cursor, page_args
from api.presenters import job_out, job_summary, online_workers_by_model
from api.request_body import parse_body
from api.schemas import JobPage
from api.submission import submit_job
from models import lifecycle
from models.eta import estimate
from models.image import Image
from models.job import Job
from models.progress import job_progress
from models.spec import JobSpec

MAX_IMAGES_INLINE = 1000


def spec_context() -> dict:
    """Limits the JobSpec validators read from settings."""
    settings = farm().settings
    return {"max_images_per_job": settings.max_images_per_job, "max_prompt_chars": settings.max_prompt_chars}


def find_job(job_id: int) -> Job:
    """The job if the caller may see it, else 404 (never 403: ids of others are not confirmed)."""
    job = db().get(Job, job_id)
    scope = owner_scope()
    if job is None or (scope is not None and job.owner_key_id != scope):
        raise ApiError(404, f"no job with id {job_id}")
    return job


def render_job(job: Job, with_images: bool = True) -> dict:
    """A job as JSON, with up to MAX_IMAGES_INLINE images."""
    session = db()
    progress = job_progress(session, [job])[job.id]
    serving = online_workers_by_model(session, farm().settings.worker_offline_seconds)
    images = None
    truncated = False
    if with_images:
        images = list(
            session.scalars(
                select(Image).where(Image.job_id == job.id).order_by(Image.index).limit(MAX_IMAGES_INLINE + 1)
            )
        )
        truncated = len(images) > MAX_IMAGES_INLINE
        images = images[:MAX_IMAGES_INLINE]
    body = job_out(job, progress, serving, images, truncated)
    guess = estimate(session, job, progress, farm().settings.worker_offline_seconds)
    body.queue_position, body.eta_seconds = guess.queue_position, guess.eta_seconds
    return body.model_dump(mode="json", exclude_none=False)


def create_job() -> tuple[Response, int, dict]:
    """POST /api/v1/jobs: validate, store, enqueue; 202 with the job and its Location.

    The body is the job as JSON, or `multipart/form-data` with the JSON in a `job` part and
    the init image and inpainting mask as `init_image` and `mask_image` file parts (no base64 needed).
    """
    uploads = None
    if request.mimetype == "multipart/form-data":
        spec, uploads = multipart_job(spec_context())
    else:
        spec = parse_body(JobSpec, spec_context())
    job, replayed = submit_once(
        "/api/v1/jobs", lambda idempotency: submit_job(farm(), db(), spec, owner_id(), uploads, idempotency)
    )
    body = render_job(job, with_images=False)
    headers = {"Location": f"/api/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(body), 200 if replayed else 202, headers


def job_status(job_id: int, with_images: bool) -> JobStatus:
    """The job's status body and ETag, from this process's cache when fresh; 404 for a job the caller may not see."""
    cache = farm().status_cache
    status = cache.get(job_id, with_images)
    if status is None:
        job = find_job(job_id)
        return cache.put(job_id, with_images, job.owner_key_id, render_job(job, with_images))
    scope = owner_scope()
    if scope is not None and status.owner_key_id != scope:
        raise ApiError(404, f"no job with id {job_id}")
    return status


def get_job(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>: status, counts, progress and images (`?images=0` leaves them out).

    Answers may be up to `status_cache_seconds` old; each carries an ETag, and a request whose
    If-None-Match names it gets 304 Not Modified with no body.
    """
    with_images = request.args.get("images", "1") not in {"0", "false", "no"}
    status = job_status(job_id, with_images)
    response = jsonify(status.body)
    response.set_etag(status.etag)
    response.headers["Cache-Control"] = "no-cache"  # a cache may keep it, but must ask again (If-None-Match)
    return response.make_conditional(request)


def list_jobs() -> Response:
    """GET /api/v1/jobs: newest first, `limit` and `cursor`; summaries (a job's spec can be large)."""
    limit, cursor = page_args()
    session = db()
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if cursor is not None:
        query = query.where(Job.id < cursor)
    scope = owner_scope()
    if scope is not None:
        query = query.where(Job.owner_key_id == scope)
    jobs = list(session.scalars(query))
    progress = job_progress(session, jobs)
    serving = online_workers_by_model(session, farm().settings.worker_offline_seconds)
    page = JobPage(
        jobs=[job_summary(job, progress[job.id], serving) for job in jobs],
        next_cursor=next_cursor([job.id for job in jobs], limit),
    )
    return jsonify(page.model_dump(mode="json"))


def cancel_job(job_id: int) -> Response:
    """POST /api/v1/jobs/<id>/cancel: the job's queued and running images stop; none of them runs again."""
    job = find_job(job_id)
    lifecycle.cancel(farm().sessions, job_id=job.id)
    farm().status_cache.forget(job.id)
    db().refresh(job)
    return jsonify(render_job(job, with_images=False))
