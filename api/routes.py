"""Every URL of the API and of the gallery's pages in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from api import catalog, health, images, jobs, openapi, png_info, workers
from api.gallery import sign_in
from api.gallery import views as gallery


@dataclass(frozen=True)
class Route:
    """A URL rule, its methods, its view, and how OpenAPI describes it."""

    rule: str
    methods: tuple[str, ...]
    view: Callable
    summary: str


API_ROUTES: tuple[Route, ...] = (
    Route("/api/v1/jobs", ("POST",), jobs.create_job, "Submit a bulk job"),
    Route("/api/v1/jobs", ("GET",), jobs.list_jobs, "List jobs, newest first"),
    Route("/api/v1/jobs/<id:job_id>", ("GET",), jobs.get_job, "A job's status, progress and images"),
    Route("/api/v1/jobs/<id:job_id>/cancel", ("POST",), jobs.cancel_job, "Cancel the job's images not yet started"),
    Route("/api/v1/images", ("GET",), images.list_images, "List images, newest first"),
    Route("/api/v1/images/<id:image_id>", ("GET",), images.get_image, "One image's parameters and outcome"),
    Route("/api/v1/images/<id:image_id>/file", ("GET",), images.image_file, "The PNG file"),
    Route("/api/v1/images/<id:image_id>/thumbnail", ("GET",), images.image_thumbnail, "The WebP thumbnail"),
    Route("/api/v1/workers", ("GET",), workers.list_workers, "Workers and their last heartbeat"),
    Route("/api/v1/models", ("GET",), catalog.list_models, "Models, their workers and queues"),
    Route("/api/v1/samplers", ("GET",), catalog.list_samplers, "Accepted sampler names"),
    Route("/api/v1/png-info", ("POST",), png_info.png_info, "Generation parameters embedded in a PNG"),
    Route("/api/v1/openapi.json", ("GET",), openapi.openapi_document, "This document"),
    Route("/healthz", ("GET",), health.healthz, "Database and broker health"),
)


# The browser gallery (HTML pages; api/gallery/ registers them on its blueprint, endpoints `gallery.<view>`).
GALLERY_ROUTES: tuple[Route, ...] = (
    Route("/", ("GET",), gallery.gallery_page, "Gallery: thumbnails, newest first, with search and filters"),
    Route("/images/<id:image_id>", ("GET",), gallery.image_page, "One image, its parameters and actions"),
    Route("/images/<id:image_id>/more", ("POST",), gallery.more_like_this_submit, "Same parameters, new seeds"),
    Route("/jobs", ("GET",), gallery.jobs_page, "Jobs with live progress, and the submit form"),
    Route("/jobs", ("POST",), gallery.submit_job_form, "Submit a bulk job from the form"),
    Route("/sign-in", ("GET",), sign_in.sign_in_page, "Sign in with an API key (when auth is on)"),
    Route("/sign-in", ("POST",), sign_in.sign_in, "Check the key and keep it in a cookie"),
    Route("/sign-out", ("POST",), sign_in.sign_out, "Forget the key"),
)


def register_api_routes(app: Flask) -> None:
    """Add every API route to the app."""
    for route in API_ROUTES:
        endpoint = f"{route.view.__module__.rsplit('.', 1)[-1]}.{route.view.__name__}"
        app.add_url_rule(route.rule, endpoint=endpoint, view_func=route.view, methods=list(route.methods))
