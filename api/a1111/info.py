"""The A1111 API's other calls: models, samplers, options, progress, png-info, and the empty answers."""

from __future__ import annotations

import psutil
from flask import Response, jsonify
from sqlalchemy import select

from api.a1111.generate import parse_request
from api.a1111.models import current_checkpoint, find_checkpoint, title_of
from api.a1111.schemas import Lora, Options, PngInfoRequest, PngInfoResponse, Sampler, Scheduler, SdModel
from api.auth import owner_id, owner_scope
from api.errors import ApiError
from api.farm import db, farm
from api.pictures import decode_base64
from api.png_info import read_metadata
from api.visibility import shown_path
from models.catalog import list_loras, short_hash
from models.eta import estimate
from models.image import Image, ImageStatus
from models.job import Job
from models.key_options import save_options
from models.progress import job_progress
from models.samplers import SAMPLERS


def sd_models() -> Response:
    """GET /sdapi/v1/sd-models: every model the farm can render, titled `name [hash]`."""
    models = [
        SdModel(
            title=title_of(entry),
            model_name=entry.name,
            hash=short_hash(entry.path) if entry.path.exists() else None,
            sha256=None,
            filename=shown_path(entry.path),
            config=None,
        )
        for entry in farm().catalog.entries().values()
    ]
    return jsonify([model.model_dump() for model in models])


def samplers() -> Response:
    """GET /sdapi/v1/samplers: A1111's names, with the farm's short aliases."""
    return jsonify([Sampler(name=s.label, aliases=list(s.aliases), options=s.overrides).model_dump() for s in SAMPLERS])


def schedulers() -> Response:
    """GET /sdapi/v1/schedulers: the noise schedules a request may name (Karras picks a sampler's Karras form)."""
    items = [
        Scheduler(name="automatic", label="Automatic", aliases=None, default_rho=None, need_inner_model=None),
        Scheduler(name="karras", label="Karras", aliases=None, default_rho=7.0, need_inner_model=None),
    ]
    return jsonify([item.model_dump() for item in items])


def loras() -> Response:
    """GET /sdapi/v1/loras: the LoRA directory's adapters."""
    found = list_loras(farm().settings.resolved_lora_dir)
    return jsonify([Lora(name=n, alias=n, path=shown_path(p), metadata={}).model_dump() for n, p in found.items()])


def get_options() -> Response:
    """GET /sdapi/v1/options: the caller's checkpoint and the defaults A1111 clients read."""
    entry = current_checkpoint()
    return jsonify(
        {
            "sd_model_checkpoint": title_of(entry),
            "sd_checkpoint_hash": None,
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "samples_format": "png",
            "save_images_before_face_restoration": False,
            "enable_pnginfo": True,
        }
    )


def set_options() -> Response:
    """POST /sdapi/v1/options: `sd_model_checkpoint` becomes the caller's default model; the rest is ignored."""
    options = parse_request(Options)
    if options.sd_model_checkpoint is not None:
        entry = find_checkpoint(options.sd_model_checkpoint)
        if entry is None:
            known = ", ".join(title_of(e) for e in farm().catalog.entries().values())
            reason = f"unknown checkpoint {options.sd_model_checkpoint!r}; known: {known}"
            raise ApiError(422, "invalid options", [{"field": "sd_model_checkpoint", "reason": reason}])
        save_options(db(), owner_id(), sd_model=entry.name)
    return jsonify({})


def refresh_checkpoints() -> Response:
    """POST /sdapi/v1/refresh-checkpoints: the catalog reads the models directory on every call already."""
    return jsonify({})


def _live_jobs() -> list[int]:
    """Ids of the caller's jobs with images still queued or running, newest first."""
    live = select(Image.job_id).where(Image.status.in_([ImageStatus.QUEUED, ImageStatus.RUNNING]))
    if owner_scope() is not None or owner_id() is not None:
        live = live.where(Image.owner_key_id == owner_id())
    return list(db().scalars(live.distinct().order_by(Image.job_id.desc()).limit(100)))


def _current_job() -> Job | None:
    """The caller's newest job with images still queued or running."""
    ids = _live_jobs()
    return db().get(Job, ids[0]) if ids else None


def progress() -> Response:
    """GET /sdapi/v1/progress: the caller's current request (its newest live job)."""
    job = _current_job()
    idle_state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    if job is None:
        return jsonify({"progress": 0, "eta_relative": 0, "state": idle_state, "current_image": None, "textinfo": None})
    counts = job_progress(db(), [job])[job.id]
    guess = estimate(db(), job, counts, farm().settings.worker_offline_seconds)
    steps = (job.spec or {}).get("steps") or 0
    state = {
        **idle_state,
        "interrupted": job.canceled_at is not None,
        "job": f"job {job.id}",
        "job_count": counts.total,
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S"),
        "job_no": counts.succeeded + counts.failed + counts.canceled,
        "sampling_step": int(counts.running_progress / counts.running * steps) if counts.running and steps else 0,
        "sampling_steps": steps,
    }
    text = f"sdfarm job {job.id}: {counts.succeeded}/{counts.total} images done"
    return jsonify(
        {
            "progress": counts.progress,
            "eta_relative": guess.eta_seconds if guess.eta_seconds is not None else 0,
            "state": state,
            "current_image": None,
            "textinfo": text,
        }
    )


def interrupt() -> Response:
    """POST /sdapi/v1/interrupt: cancel the caller's live jobs; a waiting txt2img answers with what is done."""
    from api.jobs import cancel_job

    for job_id in _live_jobs():
        cancel_job(job_id)
    return jsonify({})


def skip() -> Response:
    """POST /sdapi/v1/skip: accepted; a farm job's images render side by side, so there is no 'current' to skip."""
    return jsonify({})


def png_info() -> Response:
    """POST /sdapi/v1/png-info: `info` (the infotext), `items` (other text chunks) and parsed `parameters`."""
    body = parse_request(PngInfoRequest)
    raw = decode_base64(body.image, field="image") if body.image.strip() else b""
    if not raw:
        return jsonify(PngInfoResponse(info="", items={}, parameters={}).model_dump())
    metadata = read_metadata(raw, field="image")
    return jsonify(
        PngInfoResponse(
            info=metadata.infotext or "", items=metadata.items, parameters=metadata.a1111_parameters
        ).model_dump()
    )


def memory() -> Response:
    """GET /sdapi/v1/memory: this API server's RAM (workers own the GPUs; see /metrics)."""
    vm = psutil.virtual_memory()
    return jsonify(
        {
            "ram": {"free": vm.available, "used": vm.used, "total": vm.total},
            "cuda": {"error": "the GPUs are on the workers; see /metrics"},
        }
    )


def empty_list() -> Response:
    """An empty JSON array: upscalers, embeddings' kin, hypernetworks... the farm has none of these."""
    return jsonify([])


def embeddings() -> Response:
    """GET /sdapi/v1/embeddings: none loaded."""
    return jsonify({"loaded": {}, "skipped": {}})


def scripts() -> Response:
    """GET /sdapi/v1/scripts: no scripts (clients check this for ControlNet and the like)."""
    return jsonify({"txt2img": [], "img2img": []})


def cmd_flags() -> Response:
    """GET /sdapi/v1/cmd-flags: the flags clients look at, all off."""
    return jsonify({"api": True, "nowebui": True, "listen": False, "api_auth": None, "medvram": False})
