"""Response shapes of the JSON API; they serialize responses and document them in OpenAPI."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator, model_validator

from models.spec import MAX_PICTURE_CHARS, Url

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
    rating: Literal[-1, 0, 1] = Field(default=0, description="1 starred, 0 not rated, -1 rejected.")
    deleted_at: datetime | None = Field(
        default=None, description="When it was deleted; it can be restored until the purge removes it."
    )
    boards: list[int] | None = Field(default=None, description="Ids of the boards it is on (single-image answers).")
    url: str | None = Field(description="The PNG, once the image succeeded.")
    thumbnail_url: str | None


class JobSummary(BaseModel):
    """A job with its counts and progress, as job lists show it (GET one job for its spec and images)."""

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
    first_prompt: str = Field(default="", max_length=200, description="The job's first prompt, cut to 200 characters.")
    prompt_count: int = Field(default=0, description="How many prompts (or items) the job has.")
    images_url: str


class JobOut(JobSummary):
    """A job with its counts, progress and specification; `images` when asked for."""

    spec: dict[str, Any]
    images: list[ImageOut] | None = None
    images_truncated: bool = False


class JobPage(BaseModel):
    """A page of jobs, newest first, as summaries; pass next_cursor as `cursor` for the next page."""

    jobs: list[JobSummary]
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
    current_job_id: int | None = Field(description="The job being rendered (for keys that are not admins: theirs).")
    images_done: int
    images_per_second: float = Field(description="Images per second over its last minute of work (kept while idle).")
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
    path: str = Field(description="The weights' absolute path for admins (and with auth off); their name for others.")
    builtin: bool
    inpainting: bool = Field(description="An inpainting model: its jobs need init_image and mask_image.")
    default: bool
    defaults: dict[str, Any]
    workers: int = Field(description="Live workers serving this model.")
    queued: int = Field(description="Images waiting for this model (for keys that are not admins: their own).")


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

    image: str = Field(max_length=MAX_PICTURE_CHARS, description="Base64 or a data URL of the PNG.")


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

    url: Url | None = Field(default=None)
    new_secret: bool = Field(default=False, description="Make a new signing secret for this key (shown once).")


class WebhookSettingsOut(BaseModel):
    """Where the caller's webhooks go and which secret signs them."""

    url: str | None
    own_secret: bool = Field(description="This key has its own secret; else the farm-wide one signs.")
    farm_secret: bool = Field(description="The farm has SDFARM_WEBHOOK_SECRET.")
    secret: str | None = Field(default=None, description="The new secret, only in the answer that made it.")


# Curation (api/curation.py, api/boards.py): ratings, boards, bulk actions and deletes with undo.
ImageId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ImageSelectionIn(BaseModel):
    """Which images: `image_ids`, or `query`, the gallery's filters (its URL parameters as an object,
    such as `{"q": "castle", "rating": "1", "job": 7}`), which selects every match without listing it."""

    model_config = {"extra": "forbid"}

    image_ids: list[ImageId] | None = Field(default=None, max_length=10_000)
    # Values are checked by models/image_query.py, which names each bad one as `query.<name>`.
    query: dict[Annotated[str, Field(max_length=40)], Any] | None = Field(
        default=None,
        max_length=20,
        description="q, job, model, size, seed, status (default succeeded; `any`), from, to, rating (1, 0, -1, "
        "not-rejected), board, deleted (only).",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> ImageSelectionIn:
        if (self.image_ids is None) == (self.query is None):
            raise ValueError("send either image_ids or query")
        return self


class BulkActionIn(ImageSelectionIn):
    """An action on many images at once; `restore` also takes the `deletion_id` a delete answered."""

    action: Literal["rate", "add_to_board", "remove_from_board", "delete", "restore"]
    rating: Literal[-1, 0, 1] | None = Field(default=None, description="For rate: 1 star, 0 none, -1 reject.")
    board_id: ImageId | None = Field(default=None, description="For add_to_board and remove_from_board.")
    deletion_id: Annotated[str, Field(max_length=32, pattern="^[0-9a-f]{32}$")] | None = Field(
        default=None, description="For restore: undo that delete (instead of image_ids or query)."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> BulkActionIn:  # overrides the base's: deletion_id is a selection too
        given = sum(value is not None for value in (self.image_ids, self.query, self.deletion_id))
        if given != 1:
            raise ValueError("send one of image_ids, query or (for restore) deletion_id")
        return self

    @model_validator(mode="after")
    def _action_arguments(self) -> BulkActionIn:
        if self.action == "rate" and self.rating is None:
            raise ValueError("rate needs rating: 1, 0 or -1")
        if self.action in {"add_to_board", "remove_from_board"} and self.board_id is None:
            raise ValueError(f"{self.action} needs board_id")
        if self.deletion_id is not None and self.action != "restore":
            raise ValueError("deletion_id is only for restore")
        return self


class BulkActionOut(BaseModel):
    """What an action did."""

    action: str
    matched: int = Field(description="Images the action changed (for boards: added or removed).")
    deletion_id: str | None = Field(default=None, description="delete: pass to restore to undo it.")
    purge_after_seconds: float | None = Field(default=None, description="delete: how long it can be undone.")


class ImagePatchIn(BaseModel):
    """What can be changed on an image."""

    model_config = {"extra": "forbid"}

    rating: Literal[-1, 0, 1] = Field(description="1 star, 0 none, -1 reject.")


class BoardIn(BaseModel):
    """A board's name, when it is made or renamed."""

    model_config = {"extra": "forbid"}

    name: Annotated[str, Field(min_length=1, max_length=100)]

    @field_validator("name")
    @classmethod
    def _visible_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("must have visible characters and no control characters")
        return value


class BoardOut(BaseModel):
    """A board and how many images it holds."""

    id: int
    name: str
    created_at: datetime
    images: int = Field(description="Images on it (deleted ones not counted).")
    images_url: str


class BoardList(BaseModel):
    """The caller's boards, by name."""

    boards: list[BoardOut]


ExportFormat = Literal["imagefolder", "webdataset", "zip"]
# A UTC day as YYYY-MM-DD; its length bound is documented so every request string is bounded.
Day = Annotated[date, WithJsonSchema({"type": "string", "format": "date", "maxLength": 10})]
MAX_EXPORT_IDS = 10_000


class ExportIn(BaseModel):
    """What to export and how: a format, and a selection (ids, a job, a board, or the gallery's filters).

    Every selector given narrows the export (all of them together); only succeeded images are taken.
    """

    model_config = {"extra": "forbid"}

    format: ExportFormat
    image_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, min_length=1, max_length=MAX_EXPORT_IDS, description="These images (bigger sets: a query)."
    )
    job_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="The images of this job.")
    board_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="The images on this board.")
    q: str | None = Field(default=None, max_length=200, description="Prompt search, as in the gallery.")
    model: str | None = Field(default=None, max_length=200)
    size: str | None = Field(
        default=None, max_length=11, pattern=r"^[0-9]{1,5}x[0-9]{1,5}$", description="WIDTHxHEIGHT."
    )
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    rating: Literal[-1, 0, 1] | None = Field(default=None, description="1 starred, 0 unrated, -1 rejected.")
    date_from: Day | None = Field(default=None, description="Queued on or after this UTC day.")
    date_to: Day | None = Field(default=None, description="Queued on or before this UTC day.")
    all: bool = Field(default=False, description="Every image the caller can see (when nothing else is named).")
    shard_size: int | None = Field(
        default=None, ge=1, le=100_000, description="webdataset: images per tar shard (default 1000)."
    )

    @model_validator(mode="after")
    def _names_a_selection(self) -> ExportIn:
        selectors = ("image_ids", "job_id", "board_id", "q", "model", "size", "seed", "rating", "date_from", "date_to")
        if not self.all and all(getattr(self, name) in (None, "", []) for name in selectors):
            raise ValueError(
                "say what to export: image_ids, job_id, board_id or a filter (q, model, size, seed, rating, "
                "date_from, date_to), or all: true for every image"
            )
        if self.shard_size is not None and self.format != "webdataset":
            raise ValueError("shard_size applies to the webdataset format only")
        return self


class ExportFileOut(BaseModel):
    """One file an export made: an archive, or one WebDataset shard."""

    name: str
    url: str = Field(description="Download URL.")
    bytes: int
    images: int


class ExportOut(BaseModel):
    """An export's state and, once made, its files."""

    id: int
    format: ExportFormat
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0, le=1)
    images: int = Field(description="Images in the export (known once it runs).")
    done: int = Field(description="Images written so far.")
    files: list[ExportFileOut] = Field(description="Download URLs, once succeeded.")
    error: str | None
    selection: dict[str, Any]
    shard_size: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str


class ExportList(BaseModel):
    """The caller's newest exports, newest first."""

    exports: list[ExportOut]
