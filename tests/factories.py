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
