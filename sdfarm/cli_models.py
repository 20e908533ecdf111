"""`sdfarm model` (build the tiny and demo models) and `sdfarm models` (list and convert checkpoints)."""

from __future__ import annotations

from pathlib import Path

import click

from models.settings import Settings


@click.group()
def model() -> None:
    """Build sdfarm's own small models."""


@model.command("make-tiny")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--architecture", type=click.Choice(["sd1", "sd2", "sdxl"]), default="sd1", show_default=True)
@click.option("--inpainting", is_flag=True, help="SD 1.x only: a UNet with the 9 inputs of inpainting models.")
@click.option("--single-file", is_flag=True, help="Also write DIRECTORY.safetensors in the original layout.")
def make_tiny(directory, seed, architecture, inpainting, single_file) -> None:
    """Build a random tiny Stable Diffusion (real architecture) as a diffusers folder in DIRECTORY."""
    from worker.model_build.tiny_any import build_tiny, save_as_single_file

    if inpainting and architecture != "sd1":
        raise click.UsageError("--inpainting builds SD 1.x models only; drop --architecture or --inpainting")
    build_tiny(architecture, directory, seed=seed, inpainting=inpainting)
    click.echo(f"tiny {architecture} model written to {directory}; use it with SDFARM_MODEL={directory}")
    if single_file:
        checkpoint = save_as_single_file(directory, architecture, directory.with_suffix(".safetensors"))
        click.echo(f"single-file copy written to {checkpoint}; use it with SDFARM_MODEL={checkpoint}")


@model.command("train-demo")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--vae-steps", type=int, default=1500, show_default=True, help="Autoencoder steps (shipped recipe).")
@click.option("--unet-steps", type=int, default=6000, show_default=True, help="UNet + text encoder steps.")
@click.option("--seed", type=int, default=0, show_default=True)
def train_demo(directory, vae_steps, unet_steps, seed) -> None:
    """Train the demo 'shapes' model (coloured shapes on coloured backgrounds) into DIRECTORY."""
    from worker.demo_model.train import train_demo_model

    train_demo_model(directory, vae_steps=vae_steps, unet_steps=unet_steps, seed=seed)
    click.echo(f"shapes model written to {directory}; use it with SDFARM_MODEL={directory}")


@click.group("models")
def models_group() -> None:
    """The models this farm can serve."""


@models_group.command("list")
def models_list() -> None:
    """List models with kind, architecture (sd1, sd2, sdxl), hash and defaults; inpainting models say so."""
    from models.catalog import ModelCatalog, short_hash

    settings = Settings()
    catalog = ModelCatalog(settings.resolved_models_dir, settings.model)
    for name, entry in catalog.entries().items():
        digest = short_hash(entry.path) if entry.path.exists() else "(not built yet)"
        default = " (default)" if name == catalog.default_name else ""
        architecture = f"{entry.architecture}-inpainting" if entry.inpainting else entry.architecture
        d = entry.defaults
        click.echo(
            f"{name}{default}  {entry.kind}  {architecture}  {digest}  "
            f"{d.width}x{d.height} {d.steps} steps {d.sampler}  {entry.path}"
        )
    models_dir = settings.resolved_models_dir
    pickled = sorted(p for p in models_dir.iterdir() if p.suffix in {".ckpt", ".pt"}) if models_dir.is_dir() else []
    for file in pickled:
        click.echo(
            f"skipped {file.name}: sdfarm loads .safetensors only (a pickle can run code when loaded); "
            f"convert it with `sdfarm models convert {file}`"
        )


@models_group.command("convert")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def models_convert(checkpoint) -> None:
    """Convert a pickled .ckpt/.pt checkpoint into CHECKPOINT.safetensors beside it.

    Only tensors are unpickled (torch.load with weights_only), so a file that hides code fails
    here instead of running it.
    """
    import pickle

    import torch
    from safetensors.torch import save_file

    target = checkpoint.with_suffix(".safetensors")
    if target.exists():
        raise click.ClickException(f"{target} already exists; move it away first")
    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise click.ClickException(
            f"{checkpoint} holds more than tensors, or is not a PyTorch checkpoint, so sdfarm will not unpickle "
            f"it ({str(error).splitlines()[0]})"
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    tensors = {k: v for k, v in (state or {}).items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise click.ClickException(f"{checkpoint} holds no tensors under 'state_dict' or at its top level")
    # safetensors stores each tensor on its own: views of one storage are written as copies.
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(target))
    click.echo(f"wrote {target} ({len(tensors)} tensors); the .ckpt is no longer needed by sdfarm")
