"""Pictures that clients send (png-info, init images, masks): every one is opened here, at bounded cost.

A picture is untrusted: its header may promise billions of pixels (a decompression bomb), its
data may stop half way, its text chunks may be megabytes of text made to be slow to parse. Each
of these ends in a 4xx naming the field and the limit, never a 500 or a stalled process.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import warnings
import zlib

from PIL import Image as PILImage

from api.errors import ApiError
from models.infotext import MAX_INFOTEXT_BYTES
from models.spec import MAX_PICTURE_BYTES

# PIL's own default (about 89 megapixels): above it a picture is taken for a decompression bomb.
MAX_PICTURE_PIXELS = 89_478_485
# Text chunks (PNG tEXt/zTXt/iTXt, EXIF): parsers of other tools' metadata are not all linear, so
# plain text is kept small; ComfyUI and InvokeAI keep whole workflows as JSON, parsed in linear time.
MAX_TEXT_CHUNK_BYTES = MAX_INFOTEXT_BYTES
MAX_JSON_CHUNK_BYTES = 1024 * 1024
JSON_CHUNKS = frozenset({"workflow", "prompt", "invokeai_metadata", "invokeai_graph", "sd-metadata"})

# Errors PIL raises for malformed or truncated files, depending on the format and where it breaks.
_BROKEN = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError, TypeError)


def invalid(field: str, reason: str, status: int = 422) -> ApiError:
    """The error for a picture sent in `field`."""
    return ApiError(status, f"invalid {field}", [{"field": field, "reason": reason}])


def _megabytes(count: int) -> str:
    return f"{count // (1024 * 1024)} MB"


def decode_base64(encoded: str, field: str) -> bytes:
    """The bytes of base64 text or a base64 data URL; 422 naming `field` otherwise."""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        if ";base64" not in header:
            raise invalid(field, "data URLs must be base64-encoded")
    if len(encoded) > MAX_PICTURE_BYTES * 4 // 3 + 4:
        raise invalid(field, f"larger than {_megabytes(MAX_PICTURE_BYTES)}; the limit is {MAX_PICTURE_BYTES} bytes")
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "not valid base64") from None


def open_picture(raw: bytes, field: str, formats: frozenset[str] | None = None) -> PILImage.Image:
    """The picture's header and metadata (no pixels decoded yet); 4xx naming `field` unless sane.

    Refused: more than MAX_PICTURE_BYTES, more than MAX_PICTURE_PIXELS, a format outside `formats`,
    a file PIL cannot read, and text chunks over their limits (see `text_chunks`).
    """
    if len(raw) > MAX_PICTURE_BYTES:
        raise invalid(field, f"is {len(raw)} bytes; the limit is {MAX_PICTURE_BYTES}", status=413)
    try:
        with warnings.catch_warnings():
            # PIL warns between one and two times its pixel limit and raises above; both are refused.
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(raw), formats=sorted(formats) if formats else None)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise invalid(field, f"has more than {MAX_PICTURE_PIXELS} pixels (a decompression bomb?)") from None
    except PILImage.UnidentifiedImageError:
        accepted = ", ".join(sorted(formats)) if formats else "a picture format PIL reads"
        raise invalid(field, f"not a readable picture; send {accepted}") from None
    except _BROKEN as error:
        raise invalid(field, f"truncated or corrupt picture ({_describe(error)})") from None
    # PIL's own limit is a module setting that anything may change; ours is checked here.
    if picture.width * picture.height > MAX_PICTURE_PIXELS:
        raise invalid(
            field, f"is {picture.width}x{picture.height}, more than {MAX_PICTURE_PIXELS} pixels (a decompression bomb?)"
        )
    text_chunks(picture, field)
    return picture


def decode_pixels(picture: PILImage.Image, field: str, mode: str) -> PILImage.Image:
    """The picture's pixels in `mode`; 422 naming `field` when the data is truncated or corrupt."""
    try:
        return picture.convert(mode)
    except _BROKEN as error:
        raise invalid(field, f"truncated or corrupt picture ({_describe(error)})") from None


def text_chunks(picture: PILImage.Image, field: str) -> dict[str, str]:
    """The picture's text metadata; 422 naming the chunk and its limit when one is too large.

    JSON chunks of known tools may hold MAX_JSON_CHUNK_BYTES, other text MAX_TEXT_CHUNK_BYTES,
    EXIF (where JPEG and WebP keep A1111's parameters) MAX_TEXT_CHUNK_BYTES.
    """
    texts: dict[str, str] = {}
    for key, value in picture.info.items():
        if not isinstance(key, str):
            continue
        if key == "exif" and isinstance(value, bytes | bytearray):
            if len(value) > MAX_TEXT_CHUNK_BYTES:
                raise invalid(field, f"its EXIF data is {len(value)} bytes; the limit is {MAX_TEXT_CHUNK_BYTES}")
            continue
        if not isinstance(value, str):
            continue
        size = len(value.encode("utf-8", "surrogatepass"))
        limit = MAX_JSON_CHUNK_BYTES if key in JSON_CHUNKS else MAX_TEXT_CHUNK_BYTES
        if size > limit:
            raise invalid(field, f"text chunk {key[:40]!r} is {size} bytes; the limit is {limit}")
        texts[key] = value
    return texts


def _describe(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text:
        return f"a compressed text chunk is over {MAX_JSON_CHUNK_BYTES} bytes"
    return text[:200]
