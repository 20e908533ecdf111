"""Image rows for gallery tests, written straight to the database (no worker needed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models import Image, Job
from models.base import utcnow


def add_images(
    session: Session,
    prompts: list[str],
    status: str = "succeeded",
    owner: int | None = None,
    queued_at: datetime | None = None,
    **values,
) -> list[Image]:
    """One committed job with an image per prompt; `values` override the image columns."""
    job = Job(model=values.get("model", "tiny"), total=len(prompts), spec={"prompts": prompts}, owner_key_id=owner)
    session.add(job)
    session.flush()
    images = []
    for index, prompt in enumerate(prompts):
        row = dict(
            job_id=job.id,
            index=index,
            owner_key_id=owner,
            prompt=prompt,
            negative_prompt="",
            seed=1000 + index,
            steps=4,
            guidance_scale=7.5,
            width=64,
            height=64,
            scheduler="euler_a",
            model="tiny",
            batch_key="k",
            priority=5,
            loras=[],
            status=status,
            queued_at=queued_at or utcnow(),
        )
        row.update(values)
        image = Image(**row)
        session.add(image)
        images.append(image)
    session.commit()
    return images
