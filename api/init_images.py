"""Init images for image-to-image: decoded, checked and stored before the job is."""

from __future__ import annotations

import base64
import binascii
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import request
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.errors import ApiError, fields_from_validation
from models.image import Image, ImageStatus
from models.spec import MAX_SIDE, MIN_SIDE, JobSpec

ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_INIT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class InitImage:
    """A stored init image: its object key and the size the job will render at."""

    key: str
    width: int
    height: int


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(422, "invalid job", [{"field": field, "reason": reason}])


def decode_base64(encoded: str, field: str = "init_image") -> bytes:
    """The bytes of base64 text or a base64 data URL; 422 naming `field` otherwise."""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if ";base64" not in header:
            raise _invalid(field, "data URLs must be base64-encoded")
    if len(encoded) > MAX_INIT_BYTES * 4 // 3 + 4:
        raise _invalid(field, f"larger than {MAX_INIT_BYTES // (1024 * 1024)} MB")
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(field, "not valid base64") from None


def decode_init_image(encoded: str) -> PILImage.Image:
    """Base64 or a data URL to an RGB picture; 422 for anything that is not a sane PNG/JPEG/WebP."""
    return open_init_image(decode_base64(encoded))


def open_init_image(raw: bytes) -> PILImage.Image:
    """Image bytes (JSON base64 or a multipart upload) to an RGB picture; 422 unless a sane PNG/JPEG/WebP."""
    if len(raw) > MAX_INIT_BYTES:
        raise _invalid("init_image", f"larger than {MAX_INIT_BYTES // (1024 * 1024)} MB")
    try:
        picture = PILImage.open(io.BytesIO(raw))
        picture_format = picture.format
        picture.verify()
        picture = PILImage.open(io.BytesIO(raw))
        if picture_format not in ACCEPTED_FORMATS:
            raise _invalid("init_image", f"format {picture_format} not accepted; send PNG, JPEG or WebP")
        if not (MIN_SIDE <= picture.width <= MAX_SIDE and MIN_SIDE <= picture.height <= MAX_SIDE):
            raise _invalid(
                "init_image", f"is {picture.width}x{picture.height}; each side must be {MIN_SIDE}..{MAX_SIDE}"
            )
        return picture.convert("RGB")
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, PILImage.DecompressionBombError):
        raise _invalid("init_image", "not a readable PNG, JPEG or WebP image") from None


def resolve_init_image(
    farm, session: Session, spec: JobSpec, owner_key_id: int | None, upload: bytes | None = None
) -> InitImage | None:
    """Store the job's init image (JSON or uploaded), or find the farm image it names; None for text-to-image."""
    if upload is not None and (spec.init_image is not None or spec.init_image_id is not None):
        raise _invalid("init_image", "send the init image once: as the upload or in the job, not both")
    if spec.init_image is not None or upload is not None:
        picture = open_init_image(upload) if upload is not None else decode_init_image(spec.init_image)
        # Sizes must be multiples of 8 for the VAE; crop the few extra pixels.
        picture = picture.crop((0, 0, picture.width - picture.width % 8, picture.height - picture.height % 8))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        key = f"inputs/{uuid.uuid4().hex}.png"
        farm.store.put(key, buffer.getvalue())
        return InitImage(key, picture.width, picture.height)
    if spec.init_image_id is not None:
        source = session.get(Image, spec.init_image_id)
        visible = source is not None and (owner_key_id is None or source.owner_key_id == owner_key_id)
        if not visible or source.status != ImageStatus.SUCCEEDED or not source.object_key:
            raise _invalid("init_image_id", f"no finished image with id {spec.init_image_id}")
        return InitImage(source.object_key, source.width, source.height)
    if spec.strength is not None:
        raise _invalid("strength", "only applies to image-to-image; also send init_image or init_image_id")
    return None


def multipart_job(context: dict[str, Any]) -> tuple[JobSpec, bytes | None]:
    """A `multipart/form-data` job: a `job` part holding the JSON job and an optional `init_image` file part."""
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
    upload = request.files.get("init_image")
    if upload is None:
        return spec, None
    raw = upload.read(MAX_INIT_BYTES + 1)
    if not raw:
        raise _invalid("init_image", "the uploaded file is empty")
    return spec, raw
