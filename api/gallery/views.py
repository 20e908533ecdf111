"""The gallery's pages: thumbnails with search, one image, jobs with live progress and the submit form."""

from __future__ import annotations

import dataclasses

from flask import Response, g, redirect, render_template, request, url_for
from sqlalchemy import select

from api.auth import owner_id, owner_scope
from api.boards import tenant_boards
from api.errors import ApiError
from api.farm import db, farm
from api.gallery.forms import FIELDS, UPLOADS, JobForm
from api.gallery.parameters import image_infotext, more_like_this
from api.gallery.queries import Cursor, gallery_images, job_list, neighbours
from api.ids import parse_id
from api.images import find_image
from api.init_images import MAX_INIT_BYTES, Uploads
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
        size_example=_default_size(),
        can_edit=not g.get("read_only_guest"),
    )
    return html, 400 if errors else 200


def _default_size() -> str:
    """WIDTHxHEIGHT of the farm's default model, the size filter's example."""
    catalog = farm().catalog
    entry = catalog.entries().get(catalog.default_name)
    return f"{entry.defaults.width}x{entry.defaults.height}" if entry else "512x512"


def image_page(image_id: int) -> str:
    """GET /images/<id>: the full image, every parameter, download, copy, rating, boards and "make more
    like this"; the gallery's filters in the URL give its previous and next images."""
    image = find_image(image_id)
    infotext = image_infotext(image, farm().store)
    filters, _errors = ImageFilters.from_args(request.args)  # a bad filter only loses prev/next
    init_url, init_label, mask_url = _job_input_links(image)
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
        init_url=init_url,
        init_label=init_label,
        mask_url=mask_url,
    )


def _job_input_links(image: Image) -> tuple[str | None, str, str | None]:
    """Links to the init image (the farm image it was, else the job's upload) and the mask of its job."""
    job = image.job
    source = (job.spec or {}).get("init_image_id")
    if isinstance(source, int):
        init_url, label = url_for("gallery.image_page", image_id=source), f"Image {source}"
    elif job.init_image_key:
        init_url, label = url_for("images.job_init_image", job_id=job.id), "Uploaded picture"
    else:
        init_url, label = None, ""
    mask_url = url_for("images.job_mask_image", job_id=job.id) if job.mask_image_key else None
    return init_url, label, mask_url


COMPARED_PARAMETERS = (
    ("Model", lambda i: i.model),
    ("Size", lambda i: f"{i.width}x{i.height}"),
    ("Seed", lambda i: i.seed),
    ("Steps", lambda i: i.steps),
    ("CFG scale", lambda i: i.guidance_scale),
    ("Sampler", lambda i: i.scheduler),
    ("Clip skip", lambda i: i.clip_skip),
    ("LoRAs", lambda i: ", ".join(f"{lora['name']}: {lora.get('weight', 1.0)}" for lora in i.loras or []) or "—"),
    ("Strength", lambda i: i.strength if i.strength is not None else "—"),
    ("Negative prompt", lambda i: i.negative_prompt or "—"),
)


def compare_page() -> tuple[str, int]:
    """GET /compare?ids=A,B: two images side by side, their parameters aligned and differences marked."""
    text = request.args.get("ids", "")[:100]
    parts = [part.strip() for part in text.split(",") if part.strip()]
    error = None
    images: list[Image] = []
    malformed = len(parts) > 2 or not all(part.isascii() and part.isdigit() and len(part) <= 18 for part in parts)
    if malformed:
        error = "one or two image ids, such as 12,34"
    else:
        images = [find_image(int(part)) for part in parts if int(part) > 0]
        if len(images) < 2:
            error = "name a second image to compare with"
    rows = {image.id: [(label, value(image)) for label, value in COMPARED_PARAMETERS] for image in images}
    differs = {label: len({str(dict(rows[i.id])[label]) for i in images}) > 1 for label, _ in COMPARED_PARAMETERS}
    html = render_template("compare.html", images=images, image_rows=rows, differs=differs, ids_text=text, error=error)
    return html, 400 if malformed else 200


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
    source = _image_argument("from_image")
    if source is not None:
        form = JobForm.from_spec_body(more_like_this(image_infotext(source, farm().store), source, 1))
    init = _image_argument("init_image")
    if init is not None:
        # "Use as init image": this picture, its prompt and model; the size follows the picture.
        form = JobForm.from_spec_body({"prompts": [init.prompt], "model": init.model, "init_image_id": init.id})
    return _render_jobs(form)


def _image_argument(name: str):
    """The image a query parameter names (404 for an id that is no image of the caller's), or None."""
    text = request.args.get(name, "")
    if not text:
        return None
    image_id = parse_id(text)
    if image_id is None:
        raise ApiError(404, f"no image with id {text[:30]}")
    return find_image(image_id)


def submit_job_form() -> Response | tuple[str, int]:
    """POST /jobs: validate like the API; errors go back next to their fields, success to the job."""
    return _submit(JobForm.from_mapping(request.form), _uploads())


def _uploads() -> Uploads | None:
    """The form's init image and mask files, read up to one byte past the limit (then refused)."""
    parts = {}
    for name in UPLOADS:
        upload = request.files.get(name)
        if upload is not None and upload.filename:
            parts[name] = upload.stream.read(MAX_INIT_BYTES + 1)
    return Uploads(**parts) if parts else None


def _submit(form: JobForm, uploads: Uploads | None = None) -> Response | tuple[str, int]:
    spec = form.validate(spec_context())
    if spec is not None:
        try:
            job = submit_job(farm(), db(), spec, owner_id(), uploads)
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
        model_defaults={name: dataclasses.asdict(entry.defaults) for name, entry in catalog.entries().items()},
        default_model=catalog.default_name,
        loras=sorted(path.stem for path in farm().settings.resolved_lora_dir.glob("*.safetensors"))[:200],
        samplers=[sampler.label for sampler in SAMPLERS],
        submitted=request.args.get("submitted", type=int),
        init_preview=_init_preview(form.values.get("init_image_id", "")),
    )


def _init_preview(value: str) -> Image | None:
    """The gallery image the form names as its init image, when the caller may see it and it has a thumbnail."""
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 18):
        return None
    image = db().get(Image, int(value))
    scope = owner_scope()
    if image is None or (scope is not None and image.owner_key_id != scope) or not image.thumb_key:
        return None
    return image


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
