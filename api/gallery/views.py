"""The gallery's pages: thumbnails with search, one image, jobs with live progress and the submit form."""

from __future__ import annotations

from flask import Response, g, redirect, render_template, request, url_for
from sqlalchemy import select

from api.auth import owner_id, owner_scope
from api.boards import tenant_boards
from api.errors import ApiError
from api.farm import db, farm
from api.gallery.forms import FIELDS, JobForm
from api.gallery.parameters import image_infotext, more_like_this
from api.gallery.queries import Cursor, gallery_images, job_list, neighbours
from api.images import find_image
from api.jobs import spec_context
from api.presenters import job_out, online_workers_by_model
from api.submission import submit_job
from models.curation import image_boards
from models.image import Image, ImageStatus
from models.image_query import STATUS_CHOICES, ImageFilters
from models.progress import job_progress
from models.samplers import SAMPLERS

THUMBNAILS_PER_JOB = 8
MAX_MORE_IMAGES = 64
RATING_LABELS = {"": "any", "1": "starred", "0": "not rated", "-1": "rejected", "not-rejected": "not rejected"}


def gallery_page() -> tuple[str, int]:
    """GET /: thumbnails, newest first, narrowed by the search and filters in the URL."""
    filters, errors = ImageFilters.from_args(request.args)
    page = gallery_images(db(), filters, owner_scope(), Cursor.from_args(request.args))
    args = filters.to_args()
    html = render_template(
        "gallery.html",
        page=page,
        filters=filters,
        query_args=args,
        older_url=url_for("gallery.gallery_page", **args, before=page.older) if page.older else None,
        newer_url=url_for("gallery.gallery_page", **args, after=page.newer) if page.newer else None,
        errors=errors,
        statuses=STATUS_CHOICES,
        ratings=RATING_LABELS,
        boards=tenant_boards(),
        models=sorted(farm().catalog.entries()),
        can_edit=not g.get("read_only_guest"),
    )
    return html, 400 if errors else 200


def image_page(image_id: int) -> str:
    """GET /images/<id>: the full image, every parameter, download, copy, rating, boards and "make more
    like this"; the gallery's filters in the URL give its previous and next images."""
    image = find_image(image_id)
    infotext = image_infotext(image, farm().store)
    filters, _errors = ImageFilters.from_args(request.args)  # a bad filter only loses prev/next
    newer, older = neighbours(db(), filters, owner_scope(), image.id)
    args = filters.to_args()
    return render_template(
        "image.html",
        image=image,
        infotext=infotext,
        max_more=MAX_MORE_IMAGES,
        query_args=args,
        newer_url=url_for("gallery.image_page", image_id=newer, **args) if newer else None,
        older_url=url_for("gallery.image_page", image_id=older, **args) if older else None,
        gallery_url=url_for("gallery.gallery_page", **args),
        boards=tenant_boards(),
        on_boards=set(image_boards(db(), [image.id])[image.id]),
        can_edit=not g.get("read_only_guest"),
    )


def more_like_this_submit(image_id: int) -> Response | tuple[str, int]:
    """POST /images/<id>/more: a new job with this image's parameters and new seeds."""
    image = find_image(image_id)
    count = request.form.get("num_images", "4").strip()
    if not (count.isascii() and count.isdigit() and 1 <= int(count) <= MAX_MORE_IMAGES):
        raise ApiError(422, "invalid job", [{"field": "num_images", "reason": f"a number from 1 to {MAX_MORE_IMAGES}"}])
    body = more_like_this(image_infotext(image, farm().store), image, int(count))
    form = JobForm.from_spec_body(body)
    return _submit(form)


def jobs_page() -> str:
    """GET /jobs: jobs with live progress, and the form (prefilled from `?from_image=<id>`)."""
    form = JobForm()
    source = request.args.get("from_image", "")
    if source.isascii() and source.isdigit():
        image = find_image(int(source))
        form = JobForm.from_spec_body(more_like_this(image_infotext(image, farm().store), image, 1))
    return _render_jobs(form)


def submit_job_form() -> Response | tuple[str, int]:
    """POST /jobs: validate like the API; errors go back next to their fields, success to the job."""
    return _submit(JobForm.from_mapping(request.form))


def _submit(form: JobForm) -> Response | tuple[str, int]:
    spec = form.validate(spec_context())
    if spec is not None:
        try:
            job = submit_job(farm(), db(), spec, owner_id())
        except ApiError as error:
            db().rollback()
            form.add_errors(error.fields or [{"field": "body", "reason": error.message}])
        else:
            return redirect(url_for("gallery.jobs_page", submitted=job.id, _anchor=f"job-{job.id}"), 303)
    return _render_jobs(form), 422


def _render_jobs(form: JobForm) -> str:
    session = db()
    page = job_list(session, owner_scope(), Cursor.from_args(request.args))
    progress = job_progress(session, page.rows)
    serving = online_workers_by_model(session, farm().settings.worker_offline_seconds)
    jobs = [job_out(job, progress[job.id], serving) for job in page.rows]
    thumbnails = {job.id: _recent_thumbnails(job.id) for job in jobs}
    catalog = farm().catalog
    return render_template(
        "jobs.html",
        jobs=jobs,
        page=page,
        thumbnails=thumbnails,
        first_prompts={job.id: _first_prompt(job.spec) for job in jobs},
        form=form,
        labels=FIELDS,
        models=sorted(catalog.entries()),
        default_model=catalog.default_name,
        samplers=[sampler.label for sampler in SAMPLERS],
        submitted=request.args.get("submitted", type=int),
    )


def _recent_thumbnails(job_id: int) -> list[Image]:
    query = (
        select(Image)
        .where(Image.job_id == job_id, Image.status == ImageStatus.SUCCEEDED)
        .order_by(Image.id.desc())
        .limit(THUMBNAILS_PER_JOB)
    )
    return list(db().scalars(query))


def _first_prompt(spec: dict) -> tuple[str, int]:
    prompts = spec.get("prompts") or [item.get("prompt", "") for item in spec.get("items") or []]
    return (prompts[0] if prompts else ""), len(prompts)
