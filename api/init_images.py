"""Init images for image-to-image: decoded, checked and stored before the job is."""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy.orm import Session

from api.errors import ApiError
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


def decode_init_image(encoded: str) -> PILImage.Image:
    """Base64 or a data URL to an RGB picture; 422 for anything that is not a sane PNG/JPEG/WebP."""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if ";base64" not in header:
            raise _invalid("init_image", "data URLs must be base64-encoded")
    if len(encoded) > MAX_INIT_BYTES * 4 // 3 + 4:
        raise _invalid("init_image", f"larger than {MAX_INIT_BYTES // (1024 * 1024)} MB")
    try:
        raw = base64.b64decode(encoded, validate=True)
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
    except (binascii.Error, ValueError) as error:
        if isinstance(error, ApiError):
            raise
        raise _invalid("init_image", "not valid base64") from None
    except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError):
        raise _invalid("init_image", "not a readable PNG, JPEG or WebP image") from None


def resolve_init_image(farm, session: Session, spec: JobSpec, owner_key_id: int | None) -> InitImage | None:
    """Store the job's init image (or find the farm image it names); None for text-to-image."""
    if spec.init_image is not None:
        picture = decode_init_image(spec.init_image)
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
