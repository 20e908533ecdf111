"""Every URL of the API and of the gallery's pages in one place, with what OpenAPI says of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from pydantic import BaseModel

from api import (
    api_docs,
    boards,
    catalog,
    curation,
    exports,
    health,
    images,
    job_events,
    jobs,
    metrics,
    openapi,
    png_info,
    schemas,
    webhooks,
    workers,
)
from api.a1111 import generate as a1111
from api.a1111 import info as a1111_info
from api.a1111 import schemas as a1111_schemas
from api.gallery import sign_in
from api.gallery import views as gallery
from api.ids import MAX_ID
from api.pagination import MAX_LIMIT
from models.spec import JobSpec


@dataclass(frozen=True)
class Query:
    """A query-string (or, with `location="header"`, a header) parameter and its JSON schema."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    location: str = "query"


@dataclass(frozen=True)
class Route:
    """A URL rule, its methods, its view, and how OpenAPI describes it.

    `request` is the JSON body's model and `multipart` the form parts it may come as instead;
    `response` is the success body's model, or `media` the type of a file answered instead.
    `also` lists other success statuses that answer the same body.
    `public` routes need no API key.
    """

    rule: str
    methods: tuple[str, ...]
    view: Callable
    summary: str
    request: type[BaseModel] | None = None
    multipart: dict[str, Any] | None = None
    status: int = 200
    also: tuple[tuple[int, str], ...] = ()  # other success answers with the same body: (status, when)
    response: type[BaseModel] | None = None
    media: str | None = None
    query: tuple[Query, ...] = ()
    public: bool = False
    tag: str = "sdfarm"
    in_openapi: bool = True
    endpoint: str | None = None  # for one view behind several URLs


LIMIT = Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Page size.")
CURSOR = Query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "next_cursor of the previous page.")
PAGE = (LIMIT, CURSOR)
IMAGE_FILTERS = (
    Query("job_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
    Query("status", {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]}),
    Query("model", {"type": "string"}),
    Query("seed", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
    Query("q", {"type": "string", "maxLength": 200}, "Words in the prompt (all of them, whole words)."),
    Query("rating", {"type": "string", "enum": ["1", "0", "-1", "not-rejected"]}, "1 starred, -1 rejected."),
    Query("board_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "Only images on this board."),
    Query("deleted", {"type": "string", "enum": ["only"]}, "Only deleted images not yet purged (the trash)."),
)
IDEMPOTENCY_KEY = Query(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    "Send the same key with a retried request to get the first job back (24 h), not a second job.",
    location="header",
)
WITH_IMAGES = Query(
    "images", {"type": "string", "enum": ["0", "1", "false", "true", "no", "yes"]}, "0 leaves the images out."
)

API_ROUTES: tuple[Route, ...] = (
    Route(
        "/api/v1/jobs",
        ("POST",),
        jobs.create_job,
        "Submit a bulk job",
        request=JobSpec,
        multipart=schemas.JOB_MULTIPART,
        status=202,
        also=((200, "The job first made with this Idempotency-Key (Idempotent-Replayed: true)"),),
        response=schemas.JobOut,
        query=(IDEMPOTENCY_KEY,),
    ),
    Route("/api/v1/jobs", ("GET",), jobs.list_jobs, "List jobs, newest first", response=schemas.JobPage, query=PAGE),
    Route(
        "/api/v1/jobs/<id:job_id>",
        ("GET",),
        jobs.get_job,
        "A job's status, progress and images",
        response=schemas.JobOut,
        query=(WITH_IMAGES,),
    ),
    Route(
        "/api/v1/jobs/<id:job_id>/events",
        ("GET",),
        job_events.job_events,
        "The job's progress and image completions as server-sent events (503 when too many streams are open)",
        media="text/event-stream",
    ),
    Route(
        "/api/v1/jobs/<id:job_id>/cancel",
        ("POST",),
        jobs.cancel_job,
        "Cancel the job's images not yet started",
        response=schemas.JobOut,
    ),
    Route(
        "/api/v1/jobs/<id:job_id>/webhooks",
        ("GET",),
        webhooks.job_webhooks,
        "The job's webhook deliveries and every attempt",
        response=schemas.WebhookDeliveryList,
    ),
    Route(
        "/api/v1/webhook-settings",
        ("GET",),
        webhooks.get_webhook_settings,
        "The caller's default webhook URL and secret",
        response=schemas.WebhookSettingsOut,
    ),
    Route(
        "/api/v1/webhook-settings",
        ("PUT",),
        webhooks.put_webhook_settings,
        "Set the caller's default webhook URL; make a new signing secret",
        request=schemas.WebhookSettingsIn,
        response=schemas.WebhookSettingsOut,
    ),
    Route(
        "/api/v1/images",
        ("GET",),
        images.list_images,
        "List images, newest first",
        response=schemas.ImagePage,
        query=PAGE + IMAGE_FILTERS,
    ),
    Route(
        "/api/v1/images/<id:image_id>",
        ("GET",),
        images.get_image,
        "One image's parameters and outcome",
        response=schemas.ImageOut,
    ),
    Route(
        "/api/v1/images/<id:image_id>",
        ("PATCH",),
        curation.patch_image,
        "Rate an image: 1 star, 0 none, -1 reject",
        request=schemas.ImagePatchIn,
        response=schemas.ImageOut,
    ),
    Route(
        "/api/v1/images/bulk",
        ("POST",),
        curation.bulk_action,
        "Rate, add to or remove from a board, delete or restore many images (ids or a query)",
        request=schemas.BulkActionIn,
        response=schemas.BulkActionOut,
    ),
    Route("/api/v1/boards", ("GET",), boards.list_boards, "The caller's boards", response=schemas.BoardList),
    Route(
        "/api/v1/boards",
        ("POST",),
        boards.create_board,
        "Make a board",
        request=schemas.BoardIn,
        status=201,
        response=schemas.BoardOut,
    ),
    Route("/api/v1/boards/<id:board_id>", ("GET",), boards.get_board, "One board", response=schemas.BoardOut),
    Route(
        "/api/v1/boards/<id:board_id>",
        ("PATCH",),
        boards.rename_board,
        "Rename a board",
        request=schemas.BoardIn,
        response=schemas.BoardOut,
    ),
    Route(
        "/api/v1/boards/<id:board_id>",
        ("DELETE",),
        boards.delete_board,
        "Delete a board (its images stay)",
        response=schemas.BoardOut,
    ),
    Route(
        "/api/v1/boards/<id:board_id>/images",
        ("POST",),
        boards.add_board_images,
        "Put images (ids or a query) on a board",
        request=schemas.ImageSelectionIn,
        response=schemas.BulkActionOut,
    ),
    Route(
        "/api/v1/boards/<id:board_id>/images",
        ("DELETE",),
        boards.remove_board_images,
        "Take images (ids or a query) off a board",
        request=schemas.ImageSelectionIn,
        response=schemas.BulkActionOut,
    ),
    Route("/api/v1/images/<id:image_id>/file", ("GET",), images.image_file, "The PNG file", media="image/png"),
    Route(
        "/api/v1/images/<id:image_id>/thumbnail",
        ("GET",),
        images.image_thumbnail,
        "The WebP thumbnail",
        media="image/webp",
    ),
    Route("/api/v1/jobs/<id:job_id>/init-image", ("GET",), images.job_init_image, "Init image", media="image/png"),
    Route("/api/v1/jobs/<id:job_id>/mask-image", ("GET",), images.job_mask_image, "A job's mask", media="image/png"),
    Route(
        "/api/v1/exports",
        ("POST",),
        exports.create_export,
        "Export images as a dataset (imagefolder, webdataset or zip), made in the background",
        request=schemas.ExportIn,
        status=202,
        response=schemas.ExportOut,
    ),
    Route(
        "/api/v1/exports", ("GET",), exports.list_exports, "The caller's newest exports", response=schemas.ExportList
    ),
    Route(
        "/api/v1/exports/<id:export_id>",
        ("GET",),
        exports.get_export,
        "An export's status, progress and download URLs",
        response=schemas.ExportOut,
    ),
    Route(
        "/api/v1/exports/<id:export_id>/files/<id:number>",
        ("GET",),
        exports.export_file,
        "Download one file of an export (an archive, or a WebDataset shard)",
        media="application/octet-stream",
    ),
    Route(
        "/api/v1/workers",
        ("GET",),
        workers.list_workers,
        "Workers and their last heartbeat",
        response=schemas.WorkerList,
    ),
    Route(
        "/api/v1/models",
        ("GET",),
        catalog.list_models,
        "Models, their workers and queues",
        response=schemas.ModelList,
    ),
    Route(
        "/api/v1/samplers",
        ("GET",),
        catalog.list_samplers,
        "Accepted sampler names",
        response=schemas.SamplerList,
    ),
    Route(
        "/api/v1/png-info",
        ("POST",),
        png_info.png_info,
        "Generation parameters embedded in a PNG",
        request=schemas.PngInfoIn,
        multipart=schemas.PNG_INFO_MULTIPART,
        response=schemas.PngInfoOut,
    ),
    Route(
        "/api/v1/openapi.json",
        ("GET",),
        openapi.openapi_document,
        "This document",
        media="application/json",
        public=True,
    ),
    Route("/healthz", ("GET",), health.healthz, "Database and broker health", response=schemas.Health, public=True),
    Route(
        "/metrics",
        ("GET",),
        metrics.metrics,
        "Prometheus metrics (queue depth, throughput, workers, GPUs, webhooks)",
        media="text/plain",
        public=True,
    ),
    Route("/api/docs", ("GET",), api_docs.api_docs_page, "API reference page", public=True, in_openapi=False),
    Route("/api/docs/<name>", ("GET",), api_docs.api_docs_asset, "Swagger UI's files", public=True, in_openapi=False),
)


def _sdapi(
    path: str, method: str, view: Callable, summary: str, response: type[BaseModel] | None = None, **extra: Any
) -> Route:
    media = None if response is not None else "application/json"  # the answers without a model are `{}`
    return Route(f"/sdapi/v1/{path}", (method,), view, summary, response=response, media=media, tag="a1111", **extra)


# AUTOMATIC1111's API (api/a1111/), for the clients, plugins and front ends written for it; the empty
# answers are for features the farm does not have, which clients ask about when they start.
S = a1111_schemas
A1111_ROUTES: tuple[Route, ...] = (
    _sdapi(
        "txt2img",
        "POST",
        a1111.txt2img,
        "A1111 txt2img: one farm job, waited for",
        S.GenerationResponse,
        request=S.Txt2ImgRequest,
        query=(IDEMPOTENCY_KEY,),
    ),
    _sdapi(
        "img2img",
        "POST",
        a1111.img2img,
        "A1111 img2img (with `mask`: inpainting)",
        S.GenerationResponse,
        request=S.Img2ImgRequest,
        query=(IDEMPOTENCY_KEY,),
    ),
    _sdapi("progress", "GET", a1111_info.progress, "The caller's current request", S.ProgressResponse),
    _sdapi("interrupt", "POST", a1111_info.interrupt, "Cancel the caller's running requests"),
    _sdapi("skip", "POST", a1111_info.skip, "Accepted; images of a farm job render side by side"),
    _sdapi("sd-models", "GET", a1111_info.sd_models, "Checkpoints", S.SdModelList),
    _sdapi("samplers", "GET", a1111_info.samplers, "Samplers", S.A1111Samplers),
    _sdapi("schedulers", "GET", a1111_info.schedulers, "Noise schedules", S.SchedulerList),
    _sdapi("loras", "GET", a1111_info.loras, "LoRA adapters", S.LoraList),
    _sdapi("options", "GET", a1111_info.get_options, "The caller's options", S.Options),
    _sdapi("options", "POST", a1111_info.set_options, "Set the caller's default checkpoint", request=S.Options),
    _sdapi("refresh-checkpoints", "POST", a1111_info.refresh_checkpoints, "Re-read the models directory"),
    _sdapi("refresh-loras", "POST", a1111_info.refresh_checkpoints, "Re-read the LoRA directory"),
    _sdapi(
        "png-info", "POST", a1111_info.png_info, "A picture's parameters", S.PngInfoResponse, request=S.PngInfoRequest
    ),
    _sdapi("memory", "GET", a1111_info.memory, "The API server's memory", S.AnyObject),
    _sdapi("cmd-flags", "GET", a1111_info.cmd_flags, "Command-line flags", S.AnyObject),
    _sdapi("embeddings", "GET", a1111_info.embeddings, "Textual inversion embeddings (none)", S.AnyObject),
    _sdapi("scripts", "GET", a1111_info.scripts, "Scripts (none)", S.AnyObject),
    *(
        _sdapi(path, "GET", a1111_info.empty_list, f"{path} (none on the farm)", S.AnyList, endpoint=path)
        for path in (
            "upscalers",
            "latent-upscale-modes",
            "sd-vae",
            "hypernetworks",
            "face-restorers",
            "realesrgan-models",
            "prompt-styles",
            "script-info",
            "extensions",
            "sd-modules",
        )
    ),
)

# The browser gallery (HTML pages; api/gallery/ registers them on its blueprint, endpoints `gallery.<view>`).
GALLERY_ROUTES: tuple[Route, ...] = (
    Route("/", ("GET",), gallery.gallery_page, "Gallery: thumbnails, newest first, with search and filters"),
    Route("/images/<id:image_id>", ("GET",), gallery.image_page, "One image, its parameters and actions"),
    Route("/images/<id:image_id>/more", ("POST",), gallery.more_like_this_submit, "Same parameters, new seeds"),
    Route("/compare", ("GET",), gallery.compare_page, "Two images side by side (`?ids=A,B`)"),
    Route("/jobs", ("GET",), gallery.jobs_page, "Jobs with live progress, and the submit form"),
    Route("/jobs", ("POST",), gallery.submit_job_form, "Submit a bulk job from the form"),
    Route("/sign-in", ("GET",), sign_in.sign_in_page, "Sign in with an API key (when auth is on)"),
    Route("/sign-in", ("POST",), sign_in.sign_in, "Check the key and keep it in a cookie"),
    Route("/sign-out", ("POST",), sign_in.sign_out, "Forget the key"),
)


def endpoint_name(route: Route) -> str:
    """The Flask endpoint of an API route: `<module>.<view>` (`a1111.<view>` for A1111's)."""
    module = "a1111" if route.tag == "a1111" else route.view.__module__.rsplit(".", 1)[-1]
    return f"{module}.{route.endpoint or route.view.__name__}"


def public_endpoints() -> set[str]:
    """Endpoints of the API routes that need no key."""
    return {endpoint_name(route) for route in API_ROUTES + A1111_ROUTES if route.public}


def served_routes(settings) -> tuple[Route, ...]:
    """The API routes this farm serves: A1111's unless SDFARM_A1111_API=false."""
    return API_ROUTES + (A1111_ROUTES if settings.a1111_api else ())


def register_api_routes(app: Flask) -> None:
    """Add every API route to the app."""
    settings = app.extensions["sdfarm"].settings
    for route in served_routes(settings):
        app.add_url_rule(route.rule, endpoint=endpoint_name(route), view_func=route.view, methods=list(route.methods))
