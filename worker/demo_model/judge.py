"""Judge which palette colours an image shows: the background's and the shape's."""

from __future__ import annotations

import numpy as np
from PIL import Image

from worker.demo_model.shapes import PALETTE

# RGB distance above which a pixel counts as "not background"; palette colours are >= ~110 apart,
# so this keeps VAE blur around the edges out while any real shape pixel gets in.
SHAPE_THRESHOLD = 60.0
NO_SHAPE = "none"

_NAMES = list(PALETTE)
_COLOURS = np.array([PALETTE[name] for name in _NAMES], dtype=np.float32)


def nearest_colour(rgb: np.ndarray) -> str:
    """Name of the palette colour closest (Euclidean RGB) to `rgb`."""
    return _NAMES[int(np.argmin(((_COLOURS - np.asarray(rgb, dtype=np.float32)) ** 2).sum(axis=1)))]


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An (H, W, 3) float array in 0..255 from a PIL image or a uint8/float array of that shape."""
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if array.max() <= 1.0:  # a float image in [0, 1], as the pipeline returns with output_type="np"
        array = array * 255.0
    return array[..., :3]


def judge_colours(image: Image.Image | np.ndarray) -> tuple[str, str]:
    """(background, shape) palette colour names; shape is 'none' when nothing stands out from the background."""
    pixels = _as_array(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    # The median ignores the few border pixels a shape may touch.
    background_rgb = np.median(border, axis=0)
    distance = np.sqrt(((pixels - background_rgb) ** 2).sum(axis=-1))
    shape_pixels = pixels[distance > SHAPE_THRESHOLD]
    if len(shape_pixels) == 0:
        return nearest_colour(background_rgb), NO_SHAPE
    return nearest_colour(background_rgb), nearest_colour(np.median(shape_pixels, axis=0))
