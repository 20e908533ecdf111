"""`/api/v1/models` and `/api/v1/samplers`: what the farm can render, and with what."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import func, select

from api.auth import owner_scope
from api.farm import db, farm
from api.presenters import online_workers_by_model
from api.schemas import ModelList, ModelOut, SamplerList, SamplerOut
from api.visibility import shown_path
from models.image import Image, ImageStatus
from models.samplers import SAMPLERS


def list_models() -> Response:
    """GET /api/v1/models: each model with its defaults, live workers and queued images (the caller's own)."""
    session = db()
    catalog = farm().catalog
    serving = online_workers_by_model(session, farm().settings.worker_offline_seconds)
    waiting = select(Image.model, func.count()).where(Image.status == ImageStatus.QUEUED)
    if owner_scope() is not None:
        waiting = waiting.where(Image.owner_key_id == owner_scope())
    queued = dict(session.execute(waiting.group_by(Image.model)).all())
    default = catalog.default_name
    models = [
        ModelOut(
            **{**entry.describe(), "path": shown_path(entry.path)},
            default=name == default,
            workers=serving.get(name, 0),
            queued=queued.get(name, 0),
        )
        for name, entry in catalog.entries().items()
    ]
    return jsonify(ModelList(models=models).model_dump(mode="json"))


def list_samplers() -> Response:
    """GET /api/v1/samplers: A1111 names, short aliases, and the diffusers scheduler each maps to."""
    samplers = [
        SamplerOut(name=s.label, aliases=list(s.aliases), scheduler=s.scheduler_class, options=s.overrides)
        for s in SAMPLERS
    ]
    return jsonify(SamplerList(samplers=samplers).model_dump(mode="json"))
