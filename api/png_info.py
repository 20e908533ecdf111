"""`POST /api/v1/png-info`: the generation parameters embedded in a picture, ours or another tool's.

AUTOMATIC1111's infotext (which sdfarm writes too) is parsed by models/infotext.py; the metadata of
other tools (InvokeAI, ComfyUI, NovelAI, Fooocus) by the `sd-parsers` package, and turned into the
same fields and an equivalent infotext.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Response, jsonify, request
from sd_parsers import ParserManager
from sd_parsers.extractors import Eagerness

from api.errors import ApiError
from api.pictures import MAX_PICTURE_BYTES, decode_base64, open_picture, text_chunks
from api.request_body import parse_body
from api.schemas import PngInfoIn, PngInfoOut
from models.infotext import format_infotext, parse_infotext

log = logging.getLogger(__name__)
# FAST reads the metadata PIL parsed with the header; DEFAULT would decode every pixel to look for more.
_parsers = ParserManager(eagerness=Eagerness.FAST)


@dataclass
class PictureMetadata:
    """What a picture says about how it was made."""

    infotext: str | None = None
    generator: str | None = None
    parameters: dict[str, Any] | None = None
    items: dict[str, Any] = field(default_factory=dict)

    @property
    def a1111_parameters(self) -> dict[str, Any]:
        """The fields as A1111's png-info names them ('Prompt', 'Steps', 'Size-1', ...)."""
        if not self.parameters:
            return {}
        fields: dict[str, Any] = {
            "Prompt": self.parameters["prompt"],
            "Negative prompt": self.parameters["negative_prompt"],
        }
        for key, value in self.parameters["params"].items():
            if key == "Size" and "x" in str(value):
                fields["Size-1"], fields["Size-2"] = str(value).split("x", 1)
            else:
                fields[key] = value
        return fields


def read_upload() -> tuple[bytes, str]:
    """The picture's bytes and the field they came in: a multipart `file` part, or JSON `{"image": base64}`."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(422, "no picture", [{"field": "file", "reason": "send the PNG as a 'file' part"}])
        raw = upload.read(MAX_PICTURE_BYTES + 1)
        field = "file"
    else:
        raw = decode_base64(parse_body(PngInfoIn).image, field="image")
        field = "image"
    if len(raw) > MAX_PICTURE_BYTES:
        reason = f"larger than {MAX_PICTURE_BYTES} bytes, the limit"
        raise ApiError(413, "picture too large", [{"field": field, "reason": reason}])
    return raw, field


def read_metadata(raw: bytes, field: str = "file") -> PictureMetadata:
    """Everything the picture carries: A1111 infotext first, else another tool's metadata via sd-parsers."""
    picture = open_picture(raw, field)
    texts = text_chunks(picture, field)
    items = {key: value for key, value in texts.items() if key != "parameters"}
    text = texts.get("parameters")
    if isinstance(text, str) and text.strip():
        return PictureMetadata(text, "AUTOMATIC1111", parse_infotext(text), items)
    try:
        found = _parsers.parse(picture)
    except Exception as error:  # a malformed chunk from another tool is "no parameters", not a 500
        log.info("sd-parsers could not read the picture: %s", error)
        found = None
    if found is None or not found.samplers:
        return PictureMetadata(items=items)
    infotext = _infotext_from(found)
    parsed = parse_infotext(infotext)
    return PictureMetadata(infotext, str(found.generator.value), parsed, items)


def _infotext_from(found) -> str:
    """An A1111-style infotext for another tool's parameters, so every client reads one format."""
    sampler = found.samplers[0]
    values = {**found.metadata, **sampler.parameters}
    width, height = values.get("width"), values.get("height")
    if width is None and "EmptyLatentImage" in found.metadata:
        latent = found.metadata["EmptyLatentImage"][0]
        width, height = latent.get("width"), latent.get("height")
    params = {
        "Steps": values.get("steps"),
        "Sampler": sampler.name,
        "CFG scale": values.get("cfg_scale"),
        "Seed": values.get("seed"),
        "Size": f"{width}x{height}" if width and height else None,
        "Model hash": sampler.model.hash if sampler.model else None,
        "Model": sampler.model.name if sampler.model else None,
        "Denoising strength": values.get("denoise") if values.get("denoise") not in (None, 1, 1.0) else None,
        "Generator": str(found.generator.value),
    }
    return format_infotext(found.full_prompt, found.full_negative_prompt, params)


def png_info() -> Response:
    """POST /api/v1/png-info: the infotext, the tool that made the picture, and the parsed parameters."""
    metadata = read_metadata(*read_upload())
    body = PngInfoOut(infotext=metadata.infotext, parameters=metadata.parameters, generator=metadata.generator)
    return jsonify(body.model_dump(mode="json"))
