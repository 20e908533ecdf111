"""A job's own inputs as files: the init image and inpainting mask it was submitted with."""

from __future__ import annotations

from flask import Response

from api.images import send_object
from api.jobs import find_job


def job_init_image(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/init-image: the picture an image-to-image job started from (PNG)."""
    job = find_job(job_id)
    return send_object(job.init_image_key, "image/png", f"sdfarm-{job.id}-init.png", "this job has no init image")


def job_mask_image(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/mask-image: an inpainting job's mask (PNG; white is repainted)."""
    job = find_job(job_id)
    return send_object(job.mask_image_key, "image/png", f"sdfarm-{job.id}-mask.png", "this job has no mask")
