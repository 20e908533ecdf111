"""Turning a validated JobSpec into rows, committed, then messages published: in that order."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.farm import Farm
from api.init_images import Uploads, resolve_inputs
from api.rate_limits import check_queued_cap
from models import lifecycle
from models.base import utcnow
from models.catalog import UnknownModelError, list_loras, lora_path, short_hash
from models.idempotency import new_record
from models.job import Job
from models.samplers import find_sampler
from models.spec import MAX_SEED, JobSpec
from models.webhook import IMAGE_FINISHED, default_webhook_url

log = logging.getLogger(__name__)


def batch_key(params: dict[str, Any]) -> str:
    """Items with equal keys may share one pipeline call: everything but prompt and seed is equal."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]


def resolve_loras(lora_dir: Path, spec: JobSpec) -> list[dict[str, Any]]:
    """The job's LoRA adapters as stored on each row: name, weight and the file's short hash; 422 if unknown."""
    resolved = []
    for position, lora in enumerate(spec.loras):
        path = lora_path(lora_dir, lora.name)
        if path is None:
            known = ", ".join(sorted(list_loras(lora_dir))) or "none installed"
            reason = f"unknown LoRA {lora.name!r}; known: {known}"
            raise ApiError(422, "invalid job", [{"field": f"loras.{position}.name", "reason": reason}])
        if any(r["name"] == lora.name for r in resolved):
            reason = f"LoRA {lora.name!r} is named twice"
            raise ApiError(422, "invalid job", [{"field": f"loras.{position}.name", "reason": reason}])
        resolved.append({"name": lora.name, "weight": lora.weight, "hash": short_hash(path)})
    return resolved


class IdempotencyRace(Exception):
    """Another request with the same Idempotency-Key stored its job first; nothing of this one was kept."""


def submit_job(
    farm: Farm,
    session: Session,
    spec: JobSpec,
    owner_key_id: int | None,
    uploads: Uploads | None = None,
    idempotency: tuple[str, str] | None = None,
) -> Job:
    """Store the job and one row per image, commit, then publish; the job is never half-stored.

    `idempotency` is (Idempotency-Key, request fingerprint): recorded in the job's own transaction,
    so of two racing requests with one key only the first commits (IdempotencyRace for the other).
    """
    if spec.webhook_url is not None:
        from api.webhooks import check_webhook_url

        check_webhook_url(spec.webhook_url, "webhook_url", owner_key_id)
    try:
        model = farm.catalog.get(spec.model)
    except UnknownModelError:
        known = ", ".join(sorted(farm.catalog.entries())) or "none"
        raise ApiError(
            422, "invalid job", [{"field": "model", "reason": f"unknown model {spec.model!r}; known: {known}"}]
        ) from None
    loras = resolve_loras(farm.settings.resolved_lora_dir, spec)
    check_queued_cap(session, owner_key_id, spec.total)
    init = resolve_inputs(session, spec, owner_key_id, uploads)
    if model.inpainting and (init is None or not init.has_mask):
        reason = f"model {model.name!r} is an inpainting model; send init_image (or init_image_id) and mask_image"
        raise ApiError(422, "invalid job", [{"field": "mask_image", "reason": reason}])
    stored: list[str] = []  # files this request wrote, removed again if its job is not kept
    if init is not None:
        existing = {init.init_key, init.mask_key}
        init.store(farm)  # every check has passed
        stored = [key for key in (init.init_key, init.mask_key) if key and key not in existing]
    defaults = model.defaults
    width = spec.width or (init.width if init else defaults.width)
    height = spec.height or (init.height if init else defaults.height)
    sampler = spec.scheduler or defaults.sampler
    common = {
        "model": model.name,
        "steps": spec.steps or defaults.steps,
        "guidance_scale": spec.guidance_scale if spec.guidance_scale is not None else defaults.guidance_scale,
        "width": width,
        "height": height,
        "scheduler": sampler,
        "clip_skip": spec.clip_skip,
        "strength": (spec.strength if spec.strength is not None else 0.75) if init else None,
        "loras": loras,
    }
    # Two names of one sampler run alike and may share a batch; each row keeps the name it was asked with.
    shared = {k: v for k, v in common.items() if k != "scheduler"}
    inputs = {"init": init.init_key if init else None, "mask": init.mask_key if init else None}
    key = batch_key({**shared, "sampler": find_sampler(sampler).label, **inputs})
    job = Job(
        model=model.name,
        priority=spec.priority,
        total=spec.total,
        owner_key_id=owner_key_id,
        spec=spec.model_dump(mode="json", exclude_none=True, exclude={"init_image", "mask_image"}),
        init_image_key=init.init_key if init else None,
        mask_image_key=init.mask_key if init else None,
        webhook_url=spec.webhook_url or default_webhook_url(session, owner_key_id),
        webhook_image_events=IMAGE_FINISHED in spec.webhook_events,
    )
    session.add(job)
    session.flush()
    now = utcnow()
    # A random seed leaves room for seed + k (k < total) within MAX_SEED, as a given one must.
    base_seed = spec.seed if spec.seed is not None else secrets.randbelow(max(1, MAX_SEED + 2 - spec.total))
    rows = []
    for position, item in enumerate(spec.expanded_items()):
        for copy in range(spec.num_images):
            index = position * spec.num_images + copy
            seed = item.seed + copy if item.seed is not None else base_seed + index
            rows.append(
                {
                    **common,
                    "job_id": job.id,
                    "index": index,
                    "owner_key_id": owner_key_id,
                    "prompt": item.prompt,
                    "negative_prompt": item.negative_prompt
                    if item.negative_prompt is not None
                    else spec.negative_prompt,
                    "seed": seed,
                    "batch_key": key,
                    "priority": spec.priority,
                    "nsfw": False,
                    "queued_at": now,
                }
            )
    lifecycle.enqueue(session, rows=rows)
    if idempotency is not None:
        session.add(new_record(owner_key_id, idempotency[0], idempotency[1], job.id))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency is None:
            raise
        for key in stored:
            farm.store.delete(key)
        raise IdempotencyRace() from None
    try:
        lifecycle.publish_work(farm.queue, model=model.name, images=len(rows), max_batch=farm.settings.max_batch)
    except Exception as error:  # the job is safe in the database; the reaper publishes it later
        log.warning("job %s stored but not yet published (broker: %s); the reaper will publish it", job.id, error)
    return job
