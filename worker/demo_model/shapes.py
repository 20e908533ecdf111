"""Synthetic captioned images: one coloured shape on a coloured background, deterministic from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Fixed palette, chosen so every pair is far apart in RGB and survives a lossy VAE.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
# Shape half-extent as a fraction of the image side, per size word.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.12, 0.2), "large": (0.26, 0.36)}

# Every word a caption can contain, so the tokenizer maps each to a single token.
CAPTION_WORDS: tuple[str, ...] = ("a", "an", "on", "background", *COLOURS, *SHAPES, *SIZES)


@dataclass(frozen=True)
class ShapeSpec:
    """What one image shows: shape, its colour, background colour, size word, centre and half-extent."""

    shape: str
    colour: str
    background: str
    size: str
    cx: float
    cy: float
    radius: float


def _with_article(phrase: str) -> str:
    """Prefix 'a' or 'an' as English wants ('an orange circle')."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def prompt(colour: str, shape: str, background: str, size: str | None = None) -> str:
    """A prompt in the training captions' wording, e.g. 'a red circle on a blue background'."""
    size_word = f"{size} " if size else ""
    return f"{_with_article(size_word + colour + ' ' + shape)} on {_with_article(background)} background"


def caption(spec: ShapeSpec, with_size: bool = False) -> str:
    """The caption that describes `spec`, naming its size word only when with_size."""
    return prompt(spec.colour, spec.shape, spec.background, spec.size if with_size else None)


def random_specs(n: int, generator: torch.Generator) -> list[ShapeSpec]:
    """Draw n random shape specs; the shape colour always differs from the background."""
    ints = torch.randint(0, 1 << 30, (n, 4), generator=generator).tolist()
    floats = torch.rand((n, 3), generator=generator).tolist()
    specs = []
    for (i_shape, i_colour, i_bg, i_size), (f_r, f_x, f_y) in zip(ints, floats, strict=True):
        colour = COLOURS[i_colour % len(COLOURS)]
        # Pick the background among the other colours so it can never match the shape.
        others = [c for c in COLOURS if c != colour]
        size = SIZES[i_size % len(SIZES)]
        low, high = SIZE_RANGES[size]
        radius = low + (high - low) * f_r
        # Keep the whole shape inside the frame.
        cx = radius + (1 - 2 * radius) * f_x
        cy = radius + (1 - 2 * radius) * f_y
        specs.append(ShapeSpec(SHAPES[i_shape % len(SHAPES)], colour, others[i_bg % len(others)], size, cx, cy, radius))
    return specs


def render(specs: list[ShapeSpec], image_size: int = 64) -> torch.Tensor:
    """Draw specs as a float batch (N, 3, H, W) in [-1, 1], the range Stable Diffusion's VAE uses."""
    n = len(specs)
    # Pixel centres in [0, 1]; all masks are computed at once for the whole batch.
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
    y = coords.view(1, -1, 1)
    x = coords.view(1, 1, -1)
    cx = torch.tensor([s.cx for s in specs]).view(n, 1, 1)
    cy = torch.tensor([s.cy for s in specs]).view(n, 1, 1)
    r = torch.tensor([s.radius for s in specs]).view(n, 1, 1)
    dx, dy = x - cx, y - cy
    circle = dx**2 + dy**2 <= r**2
    square = (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    # Upright triangle: apex at the top, base at the bottom, as wide as it is tall.
    triangle = (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)
    kind = torch.tensor([SHAPES.index(s.shape) for s in specs]).view(n, 1, 1)
    mask = torch.where(kind == 0, circle, torch.where(kind == 1, square, triangle))
    palette = torch.tensor([PALETTE[c] for c in COLOURS], dtype=torch.float32) / 127.5 - 1
    fg = palette[[COLOURS.index(s.colour) for s in specs]].view(n, 3, 1, 1)
    bg = palette[[COLOURS.index(s.background) for s in specs]].view(n, 3, 1, 1)
    return torch.where(mask.unsqueeze(1), fg, bg)


def make_batch(
    n: int, generator: torch.Generator, image_size: int = 64, size_word_prob: float = 0.5
) -> tuple[torch.Tensor, list[str]]:
    """A random batch of images in [-1, 1] and their captions; the size word appears with size_word_prob."""
    specs = random_specs(n, generator)
    with_size = (torch.rand(n, generator=generator) < size_word_prob).tolist()
    return render(specs, image_size), [caption(s, w) for s, w in zip(specs, with_size, strict=True)]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Convert a [-1, 1] batch (N, 3, H, W) to uint8 (N, H, W, 3) for saving or judging."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
