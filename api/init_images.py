"""Init images for image-to-image and masks for inpainting: decoded, checked and stored before the job is."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import request
from PIL import Image as PILImage
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.errors import ApiError, fields_from_validation
from api.pictures import MAX_PICTURE_BYTES, decode_base64, decode_pixels, open_picture
from models.image import Image, ImageStatus
from models.spec import MAX_SIDE, MIN_SIDE, JobSpec

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
MAX_INIT_BYTES = MAX_PICTURE_BYTES


@dataclass
class JobInputs:
    """A job's init image and mask, checked; pictures sent with the job are stored only by `store`."""

    width: int
    height: int
    init_key: str | None = None  # an image already in the farm, or the stored upload
    init_picture: PILImage.Image | None = None  # sent with the job, not stored yet
    mask_picture: PILImage.Image | None = None
    mask_key: str | None = None

    @property
    def has_mask(self) -> bool:
        """True for an inpainting job."""
        return self.mask_picture is not None or self.mask_key is not None

    def store(self, farm) -> None:
        """Save the pictures sent with the job in the object store (after every check has passed)."""
        if self.init_picture is not None:
            self.init_key, self.init_picture = _store_png(farm, self.init_picture), None
        if self.mask_picture is not None:
            self.mask_key, self.mask_picture = _store_png(farm, self.mask_picture, suffix="-mask"), None


@dataclass(frozen=True)
class Uploads:
    """Files sent as multipart parts instead of base64 in the JSON job."""

    init_image: bytes | None = None
    mask_image: bytes | None = None


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(422, "invalid job", [{"field": field, "reason": reason}])


def _decode_job_picture(raw: bytes, field: str, mode: str) -> PILImage.Image:
    """Image bytes (JSON base64 or a multipart upload) to a picture in `mode`; 4xx unless a sane PNG/JPEG/WebP."""
    picture = open_picture(raw, field, ACCEPTED_FORMATS)
    if not (MIN_SIDE <= picture.width <= MAX_SIDE and MIN_SIDE <= picture.height <= MAX_SIDE):
        raise _invalid(field, f"is {picture.width}x{picture.height}; each side must be {MIN_SIDE}..{MAX_SIDE}")
    return decode_pixels(picture, field, mode)


def _store_png(farm, picture: PILImage.Image, suffix: str = "") -> str:
    """Save the picture, cropped to multiples of 8 (the VAE's block size), under a new key."""
    picture = picture.crop((0, 0, picture.width - picture.width % 8, picture.height - picture.height % 8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    key = f"inputs/{uuid.uuid4().hex}{suffix}.png"
    farm.store.put(key, buffer.getvalue())
    return key


def _picture_from(spec_value: str | None, upload: bytes | None, field: str, mode: str) -> PILImage.Image | None:
    """The picture sent in the JSON (base64) or as a multipart part; at most one of them."""
    if upload is not None and spec_value is not None:
        raise _invalid(field, f"send the {field} once: as the upload or in the job, not both")
    if upload is not None:
        return _decode_job_picture(upload, field, mode)
    if spec_value is not None:
        return _decode_job_picture(decode_base64(spec_value, field), field, mode)
    return None


def resolve_inputs(
    session: Session, spec: JobSpec, owner_key_id: int | None, uploads: Uploads | None = None
) -> JobInputs | None:
    """Check the job's init image (sent, or a farm image it names) and mask; None for text-to-image.

    Nothing is stored here, so a job refused for any reason leaves no files behind.
    """
    uploads = uploads or Uploads()
    if uploads.init_image is not None and spec.init_image_id is not None:
        raise _invalid("init_image", "send the init image once: as the upload or in the job, not both")
    picture = _picture_from(spec.init_image, uploads.init_image, "init_image", "RGB")
    mask = _picture_from(spec.mask_image, uploads.mask_image, "mask_image", "L")
    if picture is not None:
        inputs = JobInputs(picture.width - picture.width % 8, picture.height - picture.height % 8, init_picture=picture)
    elif spec.init_image_id is not None:
        source = session.get(Image, spec.init_image_id)
        visible = source is not None and (owner_key_id is None or source.owner_key_id == owner_key_id)
        if not visible or source.status != ImageStatus.SUCCEEDED or not source.object_key:
            raise _invalid("init_image_id", f"no finished image with id {spec.init_image_id}")
        inputs = JobInputs(source.width, source.height, init_key=source.object_key)
    else:
        if spec.strength is not None:
            raise _invalid("strength", "only applies to image-to-image; also send init_image or init_image_id")
        if mask is not None:
            reason = "inpainting needs the picture to paint into: also send init_image or init_image_id"
            raise _invalid("mask_image", reason)
        return None
    if mask is not None:
        if (mask.width - mask.width % 8, mask.height - mask.height % 8) != (inputs.width, inputs.height):
            raise _invalid(
                "mask_image",
                f"is {mask.width}x{mask.height} but the init image is {inputs.width}x{inputs.height}; send a mask "
                "of the init image's size",
            )
        inputs.mask_picture = mask
    return inputs


def multipart_job(context: dict[str, Any]) -> tuple[JobSpec, Uploads]:
    """A `multipart/form-data` job: a `job` part holding the JSON job, optional `init_image` and `mask_image` parts."""
    job_part = request.files.get("job")
    text = job_part.read().decode("utf-8", "replace") if job_part is not None else request.form.get("job")
    if text is None:
        raise _invalid("job", "a multipart job needs a 'job' part holding the job as JSON")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"malformed JSON in the 'job' part: {error}") from None
    if not isinstance(document, dict):
        raise _invalid("job", "the 'job' part must be a JSON object")
    try:
        spec = JobSpec.model_validate(document, context=context)
    except ValidationError as error:
        raise ApiError(422, "invalid job", fields_from_validation(error)) from None
    return spec, Uploads(_read_part("init_image"), _read_part("mask_image"))


def _read_part(field: str) -> bytes | None:
    """The bytes of a file part (at most one byte over the limit, so the size check can say so)."""
    upload = request.files.get(field)
    if upload is None:
        return None
    raw = upload.read(MAX_INIT_BYTES + 1)
    if not raw:
        raise _invalid(field, "the uploaded file is empty")
    return raw
