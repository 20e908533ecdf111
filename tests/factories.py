"""Row factories for tests that need jobs and images without going through the API."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models import Image, Job


def add_job(session: Session, count: int, model: str = "tiny", priority: int = 5, batch_key: str = "k", **image) -> Job:
    """A committed job with `count` queued images."""
    job = Job(model=model, total=count, priority=priority, spec={"prompts": ["p"]})
    session.add(job)
    session.flush()
    for index in range(count):
        values = dict(
            job_id=job.id,
            index=index,
            prompt=f"prompt {index}",
            seed=index,
            steps=2,
            guidance_scale=7.5,
            width=64,
            height=64,
            scheduler="euler",
            model=model,
            batch_key=batch_key,
            priority=priority,
            loras=[],
        )
        values.update(image)
        session.add(Image(**values))
    session.commit()
    return job


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
