"""Row factories: jobs and images written straight to the database, for tests that need rows
without going through the API or a worker. The one place test rows are made."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models import Image, Job
from models.base import utcnow


def image_values(**overrides) -> dict:
    """Column values of a queued image of the tiny model, as the API would store it; `overrides` win."""
    values = dict(
        prompt="a red circle",
        negative_prompt="",
        seed=0,
        steps=2,
        guidance_scale=7.5,
        width=64,
        height=64,
        scheduler="euler",
        model="tiny",
        batch_key="k",
        priority=5,
        loras=[],
    )
    values.update(overrides)
    return values


def add_job_row(
    session: Session, total: int, prompts: list[str], model: str = "tiny", owner: int | None = None, **job
) -> Job:
    """A job row of `total` images (flushed, not committed) whose spec lists `prompts`."""
    row = Job(model=model, total=total, spec={"prompts": prompts}, owner_key_id=owner, **job)
    session.add(row)
    session.flush()
    return row


def add_job(session: Session, count: int, model: str = "tiny", priority: int = 5, batch_key: str = "k", **image) -> Job:
    """A committed job with `count` queued images (`prompt i`, seed i); `image` overrides their columns."""
    job = add_job_row(session, count, ["p"], model=model, priority=priority)
    for index in range(count):
        values = image_values(
            job_id=job.id,
            index=index,
            prompt=f"prompt {index}",
            seed=index,
            model=model,
            batch_key=batch_key,
            priority=priority,
        )
        values.update(image)
        session.add(Image(**values))
    session.commit()
    return job


def add_images(
    session: Session,
    prompts: list[str],
    status: str = "succeeded",
    owner: int | None = None,
    queued_at: datetime | None = None,
    **values,
) -> list[Image]:
    """One committed job with an image per prompt, in `status` (default succeeded); `values` override columns."""
    job = add_job_row(session, len(prompts), prompts, model=values.get("model", "tiny"), owner=owner)
    images = []
    for index, prompt in enumerate(prompts):
        row = image_values(
            job_id=job.id,
            index=index,
            owner_key_id=owner,
            prompt=prompt,
            seed=1000 + index,
            steps=4,
            scheduler="euler_a",
            status=status,
            queued_at=queued_at or utcnow(),
        )
        row.update(values)
        image = Image(**row)
        session.add(image)
        images.append(image)
    session.commit()
    return images


def image_row(**overrides) -> Image:
    """An unsaved image row with every field its infotext uses set."""
    values = dict(
        prompt="a red circle",
        negative_prompt="blurry",
        seed=42,
        steps=20,
        guidance_scale=7.5,
        width=64,
        height=64,
        scheduler="DPM++ 2M Karras",
        model="tiny",
        model_hash="3b1c9d0e2a",
        strength=0.6,
        clip_skip=2,
        loras=[{"name": "shapes-style", "weight": 0.8, "hash": "abcdef0123"}],
        nsfw=False,
    )
    values.update(overrides)
    return Image(**values)


FINISHED = "succeeded"


def add_finished_job(
    session: Session,
    store,
    count: int,
    model: str = "tiny",
    owner_key_id: int | None = None,
    prompt: str = "a red circle",
) -> Job:
    """A committed job of `count` succeeded images, each with a small PNG (infotext embedded) in `store`.

    No rendering: the pictures are flat colours, encoded as the worker encodes its PNGs. Rows go in with
    one bulk insert, so benchmarks can make tens of thousands quickly.
    """
    from PIL import Image as PILImage
    from sqlalchemy import insert

    from models.image_store import object_key_for
    from worker.encoding import encode_png, infotext_for

    job = Job(model=model, total=count, priority=5, spec={"prompts": [prompt]}, owner_key_id=owner_key_id)
    session.add(job)
    session.flush()
    rows = []
    for index in range(count):
        row = image_row(
            job_id=job.id,
            index=index,
            prompt=f"{prompt} {index}",
            seed=1000 + index,
            model=model,
            owner_key_id=owner_key_id,
            strength=None,
            clip_skip=1,
            loras=[],
        )
        key = object_key_for(job.id, index, f"{index:08x}", ".png")
        picture = PILImage.new("RGB", (row.width, row.height), ((index * 37) % 256, (index * 91) % 256, 128))
        store.put(key, encode_png(picture, infotext_for(row)), durable=False)
        values = {column.key: getattr(row, column.key) for column in Image.__table__.columns if column.key != "id"}
        values.update(
            status=FINISHED, object_key=key, batch_key="k", priority=5, attempts=1, progress=1.0, sha256="0" * 64
        )
        rows.append({k: v for k, v in values.items() if v is not None})
    for start in range(0, len(rows), 1000):
        session.execute(insert(Image), rows[start : start + 1000])
    session.commit()
    return job
