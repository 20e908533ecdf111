"""Every picture a client sends (png-info, init image, mask; ours and A1111's routes) is decoded at
bounded cost: bombs, truncated or corrupt files and oversized text chunks get a 4xx naming the field
and the limit, never a 500 (issue #12: a decompression bomb gave 500 in png-info)."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

from api.pictures import MAX_JSON_CHUNK_BYTES, MAX_PICTURE_PIXELS, MAX_TEXT_CHUNK_BYTES

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _png(size=(64, 64), texts: dict[str, str] | None = None, compress: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value, zip=compress)
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 30, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels, its data a few KB of zlib'd zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _corrupt_idat(raw: bytes) -> bytes:
    start = raw.index(b"IDAT") + 4
    length = struct.unpack(">I", raw[start - 8 : start - 4])[0]
    data = bytes(byte ^ 0x5A for byte in raw[start : start + length])
    return raw[: start - 8] + _chunk(b"IDAT", data) + raw[start + length + 4 :]


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (10, 200, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


GOOD = _png(texts={"parameters": "a red circle\nSteps: 4, Seed: 1, Size: 64x64"})
# (name, bytes, what the reason must mention)
BOMBS = [
    ("bomb-error", _bomb(20_000, 20_000), str(MAX_PICTURE_PIXELS)),  # PIL raises DecompressionBombError
    ("bomb-warning", _bomb(10_000, 10_000), str(MAX_PICTURE_PIXELS)),  # PIL only warns
    ("bomb-ours", _bomb(9_500, 9_500), str(MAX_PICTURE_PIXELS)),  # over our limit, under PIL's
]
# Text chunks matter to png-info only: an init image's are never read (nor stored).
TEXT_BOMBS = [
    ("text-chunk", _png(texts={"parameters": "x" * (MAX_TEXT_CHUNK_BYTES + 1)}), str(MAX_TEXT_CHUNK_BYTES)),
    ("source-chunk", _png(texts={"Source": "x" * (MAX_TEXT_CHUNK_BYTES + 1)}), str(MAX_TEXT_CHUNK_BYTES)),
    ("json-chunk", _png(texts={"workflow": "{" + " " * MAX_JSON_CHUNK_BYTES + "}"}), str(MAX_JSON_CHUNK_BYTES)),
]
ZTXT_BOMB = _png(texts={"parameters": "x" * (2 * MAX_JSON_CHUNK_BYTES)}, compress=True)
# Broken before the pixel data: nothing can be read, png-info included.
BROKEN_HEADERS = [
    ("cut-in-signature", GOOD[:5]),
    ("cut-in-ihdr", GOOD[:20]),
    ("cut-in-text", GOOD[: GOOD.index(b"tEXt") + 10]),
    ("bad-ihdr-crc", GOOD[:29] + bytes([GOOD[29] ^ 0xFF]) + GOOD[30:]),
    ("jpeg-cut", _jpeg()[:40]),
]
# Broken in the pixel data: refused where pixels are decoded (init image, mask).
BROKEN_PIXELS = [
    ("cut-in-idat", GOOD[: GOOD.index(b"IDAT") + 30]),
    ("no-iend", GOOD[:-12][:-20]),
    ("corrupt-idat", _corrupt_idat(GOOD)),
    ("jpeg-half", _jpeg()[: len(_jpeg()) // 2]),
]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _png_info_calls(client, raw: bytes):
    yield "file", client.post("/api/v1/png-info", data={"file": (io.BytesIO(raw), "x.png")})
    yield "image", client.post("/api/v1/png-info", json={"image": _b64(raw)})
    yield "image", client.post("/sdapi/v1/png-info", json={"image": _b64(raw)})


def _job_calls(client, raw: bytes):
    job = {"prompts": ["a"], "steps": 2, "strength": 0.5}
    yield "init_image", client.post("/api/v1/jobs", json={**job, "init_image": _b64(raw)})
    yield (
        "init_image",
        client.post(
            "/api/v1/jobs", data={"job": '{"prompts": ["a"], "steps": 2}', "init_image": (io.BytesIO(raw), "x.png")}
        ),
    )
    yield "mask_image", client.post("/api/v1/jobs", json={**job, "init_image": _b64(GOOD), "mask_image": _b64(raw)})
    a1111 = {"prompt": "a", "steps": 2, "width": 64, "height": 64}
    yield "init_images.0", client.post("/sdapi/v1/img2img", json={**a1111, "init_images": [_b64(raw)]})
    yield "mask", client.post("/sdapi/v1/img2img", json={**a1111, "init_images": [_b64(GOOD)], "mask": _b64(raw)})


def _assert_refused(field: str, response, mention: str = "") -> None:
    assert 400 <= response.status_code < 500, (field, response.status_code, response.json)
    fields = {entry["field"]: entry["reason"] for entry in response.json["error"]["fields"]}
    assert field in fields, (field, fields)
    assert mention in fields[field], (mention, fields[field])


@pytest.mark.parametrize(("name", "raw", "mention"), BOMBS, ids=[c[0] for c in BOMBS])
def test_decompression_bombs_are_refused_naming_the_field_and_the_limit(client, name, raw, mention):
    for field, response in [*_png_info_calls(client, raw), *_job_calls(client, raw)]:
        _assert_refused(field, response, mention)


@pytest.mark.parametrize(("name", "raw", "mention"), TEXT_BOMBS, ids=[c[0] for c in TEXT_BOMBS])
def test_oversized_text_chunks_are_refused_by_png_info_naming_the_limit(client, name, raw, mention):
    for field, response in _png_info_calls(client, raw):
        _assert_refused(field, response, mention)
    job = {"prompts": ["a"], "steps": 2, "strength": 0.5, "init_image": _b64(raw)}
    assert client.post("/api/v1/jobs", json=job).status_code == 202


def test_a_compressed_text_bomb_is_refused_everywhere(client):
    for field, response in [*_png_info_calls(client, ZTXT_BOMB), *_job_calls(client, ZTXT_BOMB)]:
        _assert_refused(field, response, str(MAX_JSON_CHUNK_BYTES))


@pytest.mark.parametrize(("name", "raw"), BROKEN_HEADERS, ids=[c[0] for c in BROKEN_HEADERS])
def test_broken_headers_are_refused_everywhere(client, name, raw):
    for field, response in [*_png_info_calls(client, raw), *_job_calls(client, raw)]:
        _assert_refused(field, response)


@pytest.mark.parametrize(("name", "raw"), BROKEN_PIXELS, ids=[c[0] for c in BROKEN_PIXELS])
def test_broken_pixels_are_refused_where_pixels_are_decoded(client, name, raw):
    for field, response in _job_calls(client, raw):
        _assert_refused(field, response, "truncated or corrupt")
    for _field, response in _png_info_calls(client, raw):
        assert response.status_code in (200, 422), response.json  # the metadata before the pixels is readable


def test_other_formats_are_refused_naming_the_accepted_ones(client):
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64)).save(buffer, "GIF")
    for field, response in [*_png_info_calls(client, buffer.getvalue()), *_job_calls(client, buffer.getvalue())]:
        _assert_refused(field, response, "JPEG, PNG, WEBP")


def test_good_picture_still_reads_and_a_big_json_workflow_is_accepted(client):
    response = client.post("/api/v1/png-info", data={"file": (io.BytesIO(GOOD), "x.png")})
    assert response.status_code == 200 and response.json["parameters"]["seed"] == 1
    workflow = '{"nodes": [' + ",".join(['{"id": 1}'] * 30_000) + "]}"
    assert MAX_TEXT_CHUNK_BYTES < len(workflow) < MAX_JSON_CHUNK_BYTES
    response = client.post("/api/v1/png-info", json={"image": _b64(_png(texts={"workflow": workflow}))})
    assert response.status_code == 200, response.json


ADVERSARIAL_CHUNKS = {
    "parameters": "prompt\n" + 'k: "' + ', k: "' * ((MAX_TEXT_CHUNK_BYTES - 20) // 6) + ",x,",
    "Dream": '"' + "a" * (MAX_TEXT_CHUNK_BYTES - 10),
    "Source": "a" + " " * (MAX_TEXT_CHUNK_BYTES - 10) + "b",
}


@pytest.mark.parametrize("key", sorted(ADVERSARIAL_CHUNKS))
def test_adversarial_chunks_at_the_limit_answer_quickly(client, key):
    texts = {key: ADVERSARIAL_CHUNKS[key], "Software": "NovelAI", "Comment": "{}", "Description": "x"}
    started = time.perf_counter()
    response = client.post("/api/v1/png-info", json={"image": _b64(_png(texts=texts))})
    assert response.status_code == 200, response.json
    assert time.perf_counter() - started < 3.0
