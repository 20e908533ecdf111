"""`/api/v1/images`: list, inspect and download images. Files are found by id, never by path."""

from __future__ import annotations

from flask import Response, jsonify, request

from api.auth import owner_scope
from api.errors import ApiError
from api.farm import db
from api.ids import MAX_ID
from api.objects import send_object
from api.pagination import next_cursor, page_args
from api.presenters import image_out
from api.schemas import ImagePage
from models.curation import image_boards
from models.image import Image, ImageStatus
from models.image_query import ANY_STATUS, ImageFilters, select_images

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
    # ASCII digits only ("²".isdigit() is true), and at most a 64-bit column's maximum.
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_ID):
        reason = f"not an integer from 0 to {MAX_ID}"
        raise ApiError(400, f"{name} must be an integer from 0 to {MAX_ID}", [{"field": name, "reason": reason}])
    return int(value)


# The API's names for the gallery's filters where they differ (see models/image_query.py).
API_FILTER_NAMES = {"job_id": "job", "board_id": "board"}


def list_images() -> Response:
    """GET /api/v1/images: newest first, narrowed by the gallery's filters (`job_id` for job, every status
    unless `status` says, deleted images only with `deleted=only`)."""
    limit, cursor = page_args()
    status = request.args.get("status")
    if status and status not in _STATUSES:
        raise ApiError(
            400, f"status must be one of {sorted(_STATUSES)}", [{"field": "status", "reason": "unknown status"}]
        )
    for name in API_FILTER_NAMES:
        _int_arg(name)
    args = {API_FILTER_NAMES.get(name, name): value for name, value in request.args.items()}
    args["status"] = status or ANY_STATUS
    filters, errors = ImageFilters.from_args(args)
    if errors:
        names = {gallery: api for api, gallery in API_FILTER_NAMES.items()}
        fields = [{"field": names.get(error.field, error.field), "reason": error.reason} for error in errors]
        raise ApiError(400, "invalid filter", fields)
    query, key = select_images(filters, db().get_bind().dialect.name, owner_scope())
    if cursor is not None:
        query = query.where(key < cursor)
    images = list(db().scalars(query.order_by(key.desc()).limit(limit)))
    boards = image_boards(db(), [image.id for image in images])
    page = ImagePage(
        images=[image_out(image).model_copy(update={"boards": boards[image.id]}) for image in images],
        next_cursor=next_cursor([i.id for i in images], limit),
    )
    return jsonify(page.model_dump(mode="json"))


def get_image(image_id: int) -> Response:
    """GET /api/v1/images/<id>, with the boards it is on."""
    body = image_out(find_image(image_id))
    body.boards = image_boards(db(), [image_id])[image_id]
    return jsonify(body.model_dump(mode="json"))


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
