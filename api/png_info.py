"""`POST /api/v1/png-info`: the generation parameters embedded in a picture, ours or another tool's."""

from __future__ import annotations

import io

from flask import Response, jsonify, request
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from api.errors import ApiError
from api.init_images import MAX_INIT_BYTES, decode_base64
from api.request_body import parse_body
from api.schemas import PngInfoIn, PngInfoOut
from models.infotext import parse_infotext


def read_upload() -> bytes:
    """The picture's bytes: a multipart `file` part, or JSON `{"image": base64 or data URL}`."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(422, "no picture", [{"field": "file", "reason": "send the PNG as a 'file' part"}])
        raw = upload.read(MAX_INIT_BYTES + 1)
    else:
        raw = decode_base64(parse_body(PngInfoIn).image, field="image")
    if len(raw) > MAX_INIT_BYTES:
        raise ApiError(413, f"picture larger than {MAX_INIT_BYTES // (1024 * 1024)} MB")
    return raw


def embedded_infotext(raw: bytes) -> str | None:
    """The `parameters` text chunk (PNG; WebP and JPEG from some tools carry it too), or None."""
    try:
        picture = PILImage.open(io.BytesIO(raw))
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(422, "not a picture", [{"field": "file", "reason": "not a readable image"}]) from None
    text = picture.info.get("parameters")
    return text if isinstance(text, str) and text.strip() else None


def png_info() -> Response:
    """POST /api/v1/png-info: the raw infotext and its parsed parameters (null when there is none)."""
    infotext = embedded_infotext(read_upload())
    parsed = parse_infotext(infotext) if infotext is not None else None
    return jsonify(PngInfoOut(infotext=infotext, parameters=parsed).model_dump(mode="json"))
