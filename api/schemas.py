"""Response shapes of the JSON API; they serialize responses and document them in OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
ImageStatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]


class FieldError(BaseModel):
    """One invalid field and why."""

    field: str
    reason: str


class ErrorBody(BaseModel):
    """What went wrong, and which fields, if any, caused it."""

    status: int
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every 4xx and 5xx response has this body."""

    error: ErrorBody


class ImageOut(BaseModel):
    """One requested image, its parameters and its outcome."""

    id: int
    job_id: int
    index: int
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance_scale: float
    width: int
    height: int
    sampler: str
    model: str
    model_hash: str | None
    clip_skip: int
    strength: float | None
    loras: list[dict[str, Any]]
    status: ImageStatusName
    attempts: int
    error: str | None
    worker: str | None
    progress: float
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    render_seconds: float | None
    sha256: str | None
    nsfw: bool = Field(default=False, description="Flagged by the model's safety checker (the image is kept).")
    url: str | None = Field(description="The PNG, once the image succeeded.")
    thumbnail_url: str | None


class JobOut(BaseModel):
    """A job with its counts and progress; `images` when asked for."""

    id: int
    status: JobStatus
    model: str
    priority: int
    created_at: datetime
    canceled_at: datetime | None = None
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    progress: float = Field(ge=0, le=1)
    waiting_for_worker: bool = Field(description="No live worker serves this job's model.")
    queue_position: int | None = Field(
        default=None, description="Images of other jobs queued ahead of this job's first waiting image."
    )
    eta_seconds: float | None = Field(
        default=None, description="Seconds until the job should be done, from its model's live throughput."
    )
    spec: dict[str, Any]
    images: list[ImageOut] | None = None
    images_truncated: bool = False
    images_url: str


class JobPage(BaseModel):
    """A page of jobs, newest first; pass next_cursor as `cursor` for the next page."""

    jobs: list[JobOut]
    next_cursor: str | None


class ImagePage(BaseModel):
    """A page of images, newest first."""

    images: list[ImageOut]
    next_cursor: str | None


class WorkerOut(BaseModel):
    """A worker as its last heartbeat described it."""

    name: str
    host: str
    pid: int
    device: str
    gpu_name: str | None
    gpu_memory_mb: int | None
    model: str
    state: str
    online: bool
    current_job_id: int | None
    images_done: int
    images_per_second: float
    model_loads: int
    # The configuration the worker's warm-up chose (eager, compiled, CUDA graphs, memory format), the
    # images/s it measured for it, and its start-up times; null until it has loaded its model.
    configuration: dict[str, Any] | None = None
    started_at: datetime
    last_seen: datetime


class WorkerList(BaseModel):
    """Every worker that has ever sent a heartbeat."""

    workers: list[WorkerOut]


class ModelOut(BaseModel):
    """A servable model with its defaults and its queue."""

    name: str
    kind: str
    architecture: str = Field(description="sd1, sd2, sdxl, or unknown.")
    hash: str | None = Field(description="Short SHA-256 of the weights (A1111's 10-hex 'Model hash').")
    path: str
    builtin: bool
    inpainting: bool = Field(description="An inpainting model: its jobs need init_image and mask_image.")
    default: bool
    defaults: dict[str, Any]
    workers: int = Field(description="Live workers serving this model.")
    queued: int = Field(description="Images waiting for this model.")


class ModelList(BaseModel):
    """Every model the farm knows."""

    models: list[ModelOut]


class SamplerOut(BaseModel):
    """A sampler, its aliases and the diffusers scheduler behind it."""

    name: str
    aliases: list[str]
    scheduler: str
    options: dict[str, Any]


class SamplerList(BaseModel):
    """Every accepted sampler."""

    samplers: list[SamplerOut]


class PngInfoIn(BaseModel):
    """A picture for png-info as JSON (multipart uploads use a `file` part instead)."""

    image: str = Field(description="Base64 or a data URL of the PNG.")


class PngInfoOut(BaseModel):
    """The infotext embedded in a picture and its parsed fields (prompt, negative_prompt, params, steps...)."""

    infotext: str | None = Field(
        description="The `parameters` text; for other tools' pictures, their fields in the same form. Null: none."
    )
    parameters: dict[str, Any] | None
    generator: str | None = Field(
        default=None, description="AUTOMATIC1111 (also sdfarm), InvokeAI, ComfyUI, NovelAI, Fooocus; null: unknown."
    )


class Health(BaseModel):
    """Whether the database and the broker answer."""

    status: Literal["ok", "degraded"]
    database: str
    broker: str


# Operations that also take `multipart/form-data`: the parts and what each holds.
JOB_MULTIPART: dict[str, Any] = {
    "type": "object",
    "required": ["job"],
    "properties": {
        "job": {"type": "string", "description": "The job as JSON (the application/json body)."},
        "init_image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP init image."},
        "mask_image": {
            "type": "string",
            "format": "binary",
            "description": "Inpainting mask of the init image's size: white is repainted, black kept.",
        },
    },
}
PNG_INFO_MULTIPART: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "The PNG."}},
}


class WebhookAttemptOut(BaseModel):
    """One try at sending a webhook."""

    number: int
    started_at: datetime
    duration_seconds: float
    address: str | None = Field(description="The IP address the connection was pinned to.")
    status_code: int | None
    outcome: Literal["delivered", "http_error", "network_error", "refused"]
    error: str | None


class WebhookDeliveryOut(BaseModel):
    """One event for one URL, with every attempt so far."""

    id: int
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt, for deduplication.")
    event: str
    image_id: int | None
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptOut]


class WebhookDeliveryList(BaseModel):
    """A job's webhook deliveries, oldest first."""

    deliveries: list[WebhookDeliveryOut]


class WebhookSettingsIn(BaseModel):
    """The caller's default webhook URL (for jobs without `webhook_url`), and whether to make it a new secret."""

    model_config = {"extra": "forbid"}

    url: str | None = Field(default=None, max_length=2000)
    new_secret: bool = Field(default=False, description="Make a new signing secret for this key (shown once).")


class WebhookSettingsOut(BaseModel):
    """Where the caller's webhooks go and which secret signs them."""

    url: str | None
    own_secret: bool = Field(description="This key has its own secret; else the farm-wide one signs.")
    farm_secret: bool = Field(description="The farm has SDFARM_WEBHOOK_SECRET.")
    secret: str | None = Field(default=None, description="The new secret, only in the answer that made it.")
