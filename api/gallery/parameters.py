"""An image's generation parameters as infotext, and the job that makes more images like it."""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image as PILImage

from models.image import Image
from models.image_store import ImageStore
from models.infotext import format_infotext, parse_infotext
from models.samplers import find_sampler

log = logging.getLogger(__name__)
# Parameters a new job copies from parsed infotext; the seed is left out so new seeds are drawn.
_COPIED = ("negative_prompt", "steps", "guidance_scale", "width", "height", "clip_skip")


def image_infotext(image: Image, store: ImageStore) -> str:
    """The infotext embedded in the image's PNG, or (no file yet) the one its row describes."""
    if image.object_key:
        embedded = _png_parameters(store, image.object_key)
        if embedded:
            return embedded
    return row_infotext(image)


def row_infotext(image: Image) -> str:
    """Infotext built from the row, with the parameters the worker writes (worker/encoding.py)."""
    sampler = find_sampler(image.scheduler)
    params: dict[str, Any] = {
        "Steps": image.steps,
        "Sampler": sampler.label if sampler else image.scheduler,
        "CFG scale": image.guidance_scale,
        "Seed": image.seed,
        "Size": f"{image.width}x{image.height}",
        "Model hash": image.model_hash,
        "Model": image.model,
        "Denoising strength": image.strength,
        "Clip skip": image.clip_skip if image.clip_skip > 1 else None,
        "Version": "sdfarm",
    }
    return format_infotext(image.prompt, image.negative_prompt, params)


def more_like_this(infotext: str, image: Image, num_images: int) -> dict[str, Any]:
    """A JobSpec body with the image's parameters (parsed from its infotext) and no seed, so seeds are new."""
    parsed = parse_infotext(infotext)
    body: dict[str, Any] = {"prompts": [parsed["prompt"] or image.prompt], "num_images": num_images}
    for name in _COPIED:
        if parsed.get(name) not in (None, ""):
            body[name] = parsed[name]
    body["scheduler"] = parsed.get("sampler") or image.scheduler
    # The row names the model the farm knows; infotext may carry a display name from elsewhere.
    body["model"] = image.model
    return body


def _png_parameters(store: ImageStore, key: str) -> str | None:
    try:
        path = store.local_path(key)
        source = path if path is not None else io.BytesIO(store.read(key))
        # Opening reads the chunks before the pixel data, where the worker puts the text; no decoding.
        with PILImage.open(source) as picture:
            text = picture.info.get("parameters")
    except (OSError, ValueError) as error:
        log.warning("could not read the parameters of %s: %s", key, error)
        return None
    return text if isinstance(text, str) else None
