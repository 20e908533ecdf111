"""Random LoRA adapters for the tiny models, in the diffusers/peft format, saved as .safetensors."""

from __future__ import annotations

from pathlib import Path

import torch


def make_tiny_lora(model_dir: Path, out_file: Path, seed: int = 0, rank: int = 4, scale: float = 1.0) -> Path:
    """A LoRA on the UNet's attention projections with random (non-zero) weights, so it changes the output."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", local_files_only=True)
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    unet.add_adapter(config)
    layers = {k: v * scale for k, v in get_peft_model_state_dict(unet).items()}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out_file.parent, unet_lora_layers=layers, weight_name=out_file.name)
    return out_file


def to_kohya_format(peft_file: Path, out_file: Path) -> Path:
    """The same adapter with the key names kohya's trainer writes (and most published LoRAs use)."""
    from safetensors.torch import load_file, save_file

    converted: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(peft_file).items():
        module, _, kind = key.removeprefix("unet.").rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_")
        direction = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[kind]
        converted[f"{name}.{direction}"] = tensor
        if direction == "lora_down.weight":
            # kohya scales by alpha / rank; alpha = rank keeps the scale at 1, as in the peft file.
            converted[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0]))
    save_file(converted, out_file)
    return out_file
