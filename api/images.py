"""`/api/v1/images`: list, inspect and download images. Files are found by id, never by path."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import select

from api.auth import owner_scope
from api.errors import ApiError
from api.farm import db
from api.objects import send_object
from api.pagination import next_cursor, page_args
from api.presenters import image_out
from api.schemas import ImagePage
from models.image import Image, ImageStatus

_STATUSES = {status.value for status in ImageStatus}


def find_image(image_id: int) -> Image:
    """The image if the caller may see it, else 404."""
    image = db().get(Image, image_id)
    scope = owner_scope()
    if image is None or (scope is not None and image.owner_key_id != scope):
        raise ApiError(404, f"no image with id {image_id}")
    return image


def _int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or len(value) > 18:
        raise ApiError(400, f"{name} must be a non-negative integer", [{"field": name, "reason": "not an integer"}])
    return int(value)


def list_images() -> Response:
    """GET /api/v1/images: newest first; filters `job_id`, `status`, `model`, `seed`."""
    limit, cursor = page_args()
    query = select(Image).order_by(Image.id.desc()).limit(limit)
    if cursor is not None:
        query = query.where(Image.id < cursor)
    job_id = _int_arg("job_id")
    if job_id is not None:
        query = query.where(Image.job_id == job_id)
    seed = _int_arg("seed")
    if seed is not None:
        query = query.where(Image.seed == seed)
    status = request.args.get("status")
    if status:
        if status not in _STATUSES:
            raise ApiError(
                400, f"status must be one of {sorted(_STATUSES)}", [{"field": "status", "reason": "unknown status"}]
            )
        query = query.where(Image.status == status)
    model = request.args.get("model")
    if model:
        query = query.where(Image.model == model)
    scope = owner_scope()
    if scope is not None:
        query = query.where(Image.owner_key_id == scope)
    images = list(db().scalars(query))
    page = ImagePage(
        images=[image_out(image) for image in images], next_cursor=next_cursor([i.id for i in images], limit)
    )
    return jsonify(page.model_dump(mode="json"))


def get_image(image_id: int) -> Response:
    """GET /api/v1/images/<id>."""
    return jsonify(image_out(find_image(image_id)).model_dump(mode="json"))


def _send_object(key: str | None, mimetype: str, download_name: str) -> Response:
    if not key:
        raise ApiError(404, "this image has no file yet; wait until its status is succeeded")
    as_attachment = request.args.get("download") in {"1", "true"}
    return send_object(
        key, mimetype, download_name, as_attachment, missing="the image file is missing from the object store"
    )


def image_file(image_id: int) -> Response:
    """GET /api/v1/images/<id>/file: the PNG with its infotext (`?download=1` to save it)."""
    image = find_image(image_id)
    return _send_object(image.object_key, "image/png", f"sdfarm-{image.job_id}-{image.index}-{image.seed}.png")


def image_thumbnail(image_id: int) -> Response:
    """GET /api/v1/images/<id>/thumbnail: the 256 px WebP the gallery shows."""
    image = find_image(image_id)
    return _send_object(image.thumb_key, "image/webp", f"sdfarm-{image.id}-thumb.webp")


def job_init_image(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/init-image: the picture an image-to-image job started from (PNG)."""
    from api.jobs import find_job

    job = find_job(job_id)
    if not job.init_image_key:
        raise ApiError(404, f"job {job_id} has no init image; it is a text-to-image job")
    return _send_object(job.init_image_key, "image/png", f"sdfarm-{job.id}-init.png")


def job_mask_image(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/mask-image: the inpainting mask of a job (PNG)."""
    from api.jobs import find_job

    job = find_job(job_id)
    if not job.mask_image_key:
        raise ApiError(404, f"job {job_id} has no mask image; it does not inpaint")
    return _send_object(job.mask_image_key, "image/png", f"sdfarm-{job.id}-mask.png")
