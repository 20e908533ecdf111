"""LoRA adapters: each file loaded into the pipeline once, then switched on per batch with its weight.

Adapters live as `.safetensors` files in the LoRA directory (`SDFARM_LORA_DIR`), named by
file stem. Any format diffusers' `load_lora_weights` reads works: diffusers/peft keys and
the kohya and A1111 keys most published LoRAs use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from models.catalog import lora_path, short_hash
from worker.runner import ModelLoadError

log = logging.getLogger(__name__)


class LoraSwitcher:
    """Loads adapters into one pipeline on first use and activates the set each batch asks for."""

    def __init__(self, pipeline, lora_dir: Path):
        self.pipeline = pipeline
        self.lora_dir = lora_dir
        self._loaded: dict[tuple[str, str], str] = {}  # (name, file hash) -> adapter name in the pipeline
        self._active: tuple[tuple[str, float], ...] = ()
        self._lock = threading.Lock()

    def activate(self, loras: list[dict[str, Any]]) -> None:
        """Make exactly these adapters active with their weights (none: the base model)."""
        with self._lock:
            wanted = tuple((self._adapter(lora), float(lora.get("weight", 1.0))) for lora in loras)
            if wanted == self._active:
                return
            if wanted:
                self.pipeline.enable_lora()
                self.pipeline.set_adapters([name for name, _ in wanted], adapter_weights=[w for _, w in wanted])
            elif self._loaded:
                self.pipeline.disable_lora()  # the base model again, adapters stay loaded for later batches
            self._active = wanted

    def _adapter(self, lora: dict[str, Any]) -> str:
        name = lora["name"]
        path = lora_path(self.lora_dir, name)
        if path is None:
            raise ModelLoadError(f"LoRA {name!r} is not in {self.lora_dir} on this worker")
        digest = short_hash(path)
        if lora.get("hash") and lora["hash"] != digest:
            log.warning("LoRA %s changed since the job was submitted (%s, now %s)", name, lora["hash"], digest)
        key = (name, digest)
        if key not in self._loaded:
            # peft adapter names become module attribute names: no dots or dashes.
            adapter = f"lora_{len(self._loaded)}_{digest}"
            try:
                self.pipeline.load_lora_weights(str(path), adapter_name=adapter)
            except Exception as error:
                raise ModelLoadError(f"LoRA {name!r} ({path}) does not fit this model: {error}") from error
            self._loaded[key] = adapter
            log.info("loaded LoRA %s (%s) as %s", name, digest, adapter)
        return self._loaded[key]
