"""A built-in Stable Diffusion that draws coloured shapes on coloured backgrounds as the prompt says.

`shapes` makes the captioned training images, `train` fits the VAE, text encoder and
UNet, `evaluate` measures how often the drawn colours match the prompt. Trained
weights ship in `weights/shapes-64/`.
"""

from pathlib import Path

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "weights" / "shapes-64"
