"""`POST /sdapi/v1/txt2img` and `/img2img`: one farm job per request, waited for, answered as A1111 does."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from flask import Response, jsonify
from PIL import Image as PILImage
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from api.a1111.models import current_checkpoint, find_checkpoint, title_of
from api.a1111.schemas import GenerationResponse, Img2ImgRequest, Txt2ImgRequest
from api.auth import owner_id
from api.errors import ApiError, fields_from_validation
from api.farm import db, farm
from api.idempotency import submit_once
from api.jobs import spec_context
from api.request_body import json_body
from api.submission import submit_job
from api.visibility import hide_paths
from models.catalog import ModelEntry
from models.image import Image, ImageStatus
from models.job import Job
from models.progress import job_progress
from models.samplers import find_sampler, sampler_names
from models.spec import JobSpec

POLL_SECONDS = 0.25
# JobSpec's field names as the A1111 client knows them, for error messages.
FIELD_NAMES = {
    "prompts": "prompt",
    "guidance_scale": "cfg_scale",
    "num_images": "batch_size",
    "scheduler": "sampler_name",
    "init_image": "init_images.0",
    "mask_image": "mask",
    "strength": "denoising_strength",
    "model": "override_settings.sd_model_checkpoint",
}
# A1111 features that would change the picture: refused by name rather than silently dropped.
UNSUPPORTED = {
    "enable_hr": "hires fix is not supported; render at the size you want",
    "restore_faces": "face restoration is not supported",
    "tiling": "tiling is not supported",
    "script_name": "scripts are not supported",
}
SCHEDULERS = {"automatic": "", "karras": "Karras"}


def txt2img() -> Response:
    """POST /sdapi/v1/txt2img."""
    return _generate(Txt2ImgRequest, "/sdapi/v1/txt2img")


def img2img() -> Response:
    """POST /sdapi/v1/img2img (with `mask`: inpainting)."""
    return _generate(Img2ImgRequest, "/sdapi/v1/img2img")


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(422, "invalid request", [{"field": field, "reason": reason}])


def parse_request(model: type[BaseModel]) -> Any:
    """The JSON body as `model`; 422 naming each bad field."""
    document = json_body()
    if not isinstance(document, dict):
        raise _invalid("body", "the body must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ApiError(422, "invalid request", fields_from_validation(error)) from None


def resolve_sampler(name: str | None, scheduler: str | None) -> str | None:
    """The farm sampler for A1111's sampler_name + scheduler ('DPM++ 2M' + 'karras' is 'DPM++ 2M Karras')."""
    kind = (scheduler or "automatic").strip().casefold()
    if kind not in SCHEDULERS:
        raise _invalid("scheduler", f"unknown or unsupported scheduler {scheduler!r}; use one of: automatic, karras")
    if name is None:
        return None
    label = name.strip()
    suffix = SCHEDULERS[kind]
    if suffix and not label.endswith(suffix):
        label = f"{label} {suffix}"
    if find_sampler(label) is None:
        raise _invalid("sampler_name", f"unknown sampler {label!r}; choose one of: {', '.join(sampler_names())}")
    return label


def _checkpoint(request: Txt2ImgRequest) -> ModelEntry:
    named = (request.override_settings or {}).get("sd_model_checkpoint")
    if named is None:
        return current_checkpoint()
    entry = find_checkpoint(str(named))
    if entry is None:
        known = ", ".join(sorted(farm().catalog.entries()))
        reason = f"unknown checkpoint {str(named)[:100]!r}; known: {known}"
        raise _invalid("override_settings.sd_model_checkpoint", reason)
    return entry


def _refuse_unsupported(request: Txt2ImgRequest) -> None:
    for field, reason in UNSUPPORTED.items():
        if getattr(request, field, None):
            raise _invalid(field, reason)
    for script, settings in (request.alwayson_scripts or {}).items():
        if isinstance(settings, dict) and any(arg not in (False, None) for arg in settings.get("args", [])):
            raise _invalid(f"alwayson_scripts.{script}", "extensions' scripts are not supported")


def job_spec(request: Txt2ImgRequest, entry: ModelEntry) -> JobSpec:
    """The farm job an A1111 request asks for; 422 with A1111's field names when it cannot be one."""
    _refuse_unsupported(request)
    document: dict[str, Any] = {
        "prompts": [request.prompt],
        "negative_prompt": request.negative_prompt,
        "num_images": request.batch_size * request.n_iter,
        "steps": request.steps,
        "guidance_scale": request.cfg_scale,
        "width": request.width,
        "height": request.height,
        "seed": None if request.seed == -1 else request.seed,
        "scheduler": resolve_sampler(request.sampler_name or request.sampler_index, request.scheduler),
        "model": entry.name,
    }
    if isinstance(request, Img2ImgRequest):
        document.update(init_image=request.init_images[0], mask_image=request.mask, strength=request.denoising_strength)
    try:
        return JobSpec.model_validate(document, context=spec_context())
    except ValidationError as error:
        raise ApiError(422, "invalid request", _renamed(fields_from_validation(error))) from None


def _renamed(fields: list[dict[str, str]]) -> list[dict[str, str]]:
    renamed = []
    for field in fields:
        head, _, rest = field["field"].partition(".")
        name = FIELD_NAMES.get(head, head)
        if head == "prompts":
            rest = ""
        renamed.append({**field, "field": f"{name}.{rest}" if rest else name})
    return renamed


def _generate(model: type[Txt2ImgRequest], route: str) -> Response:
    request = parse_request(model)
    entry = _checkpoint(request)
    spec = job_spec(request, entry)
    try:
        job, _replayed = submit_once(
            route, lambda idempotency: submit_job(farm(), db(), spec, owner_id(), None, idempotency)
        )
    except ApiError as error:
        error.fields = _renamed(error.fields)
        raise
    wait_for_job(job.id, farm().settings.a1111_timeout_seconds)
    return jsonify(answer(job.id, request, entry).model_dump(mode="json"))


def wait_for_job(job_id: int, timeout: float) -> None:
    """Poll until the job is final; 504 naming the job (which keeps running) past `timeout`."""
    db().close()  # hold no connection while waiting
    deadline = time.monotonic() + timeout
    while True:
        with farm().sessions() as session:
            job = session.get(Job, job_id)
            progress = job_progress(session, [job])[job_id]
        if not (progress.queued or progress.running):
            return
        if time.monotonic() >= deadline:
            raise ApiError(
                504,
                f"job {job_id} did not finish within {timeout:g}s (SDFARM_A1111_TIMEOUT_SECONDS); it keeps running: "
                f"/api/v1/jobs/{job_id}",
                headers={"Location": f"/api/v1/jobs/{job_id}"},
            )
        time.sleep(POLL_SECONDS)


def answer(job_id: int, request: Txt2ImgRequest, entry: ModelEntry) -> GenerationResponse:
    """A1111's response body: the images, the request as understood, and `info` as a JSON string."""
    session = db()
    job = session.get(Job, job_id)
    rows = list(session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index)))
    done = [row for row in rows if row.status == ImageStatus.SUCCEEDED and row.object_key]
    if not done:
        errors = sorted({hide_paths(row.error) for row in rows if row.error}) or ["canceled"]
        raise ApiError(500, f"job {job_id} made no image: {'; '.join(errors)[:1000]}")
    store = farm().store
    pngs = [store.read(row.object_key) for row in done]
    infotexts = [PILImage.open(io.BytesIO(png)).info.get("parameters", "") for png in pngs]
    first = done[0]
    ignored = {}
    if request.subseed not in (-1, 0, None) or request.subseed_strength:
        ignored["subseed"] = "variation seeds are not supported; each image has its own seed"
    if request.styles:
        ignored["styles"] = "prompt styles are not stored on the farm"
    if request.save_images is False:
        ignored["save_images"] = "every farm image is kept (gallery, /api/v1/images)"
    info = {
        "prompt": first.prompt,
        "all_prompts": [row.prompt for row in done],
        "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [row.negative_prompt for row in done],
        "seed": first.seed,
        "all_seeds": [row.seed for row in done],
        "subseed": -1,
        "all_subseeds": [-1 for _ in done],
        "subseed_strength": 0,
        "width": first.width,
        "height": first.height,
        "sampler_name": first.scheduler,
        "cfg_scale": first.guidance_scale,
        "steps": first.steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": entry.name,
        "sd_model_hash": first.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": first.strength,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": request.styles or [],
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S"),
        "clip_skip": first.clip_skip,
        "is_using_inpainting_conditioning": entry.inpainting,
        "version": "sdfarm",
        "sdfarm": {
            "job_id": job_id,
            "model": title_of(entry),
            "image_ids": [row.id for row in done],
            "failed": [
                {"index": row.index, "error": hide_paths(row.error)} for row in rows if row.status == ImageStatus.FAILED
            ],
            "canceled": sum(1 for row in rows if row.status == ImageStatus.CANCELED),
            "ignored": ignored,
        },
    }
    parameters = request.model_dump(mode="json")
    if isinstance(request, Img2ImgRequest):
        parameters.update(init_images=None, mask=None)  # as A1111 does: the pictures are not echoed back
    images = [base64.b64encode(png).decode() for png in pngs] if request.send_images else []
    return GenerationResponse(images=images, parameters=parameters, info=json.dumps(info))
