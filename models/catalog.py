"""The models a farm can serve: named diffusers folders and single-file checkpoints on disk.

A model is registered by being in the models directory (a diffusers folder or a
`.safetensors` file, optionally with a `<name>.sdfarm.json` file of defaults beside it),
or by `SDFARM_MODEL` naming a path. Two are built in: `shapes`, the demo model that
ships with sdfarm, and `tiny`, the random tiny model (built on first use).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.samplers import DEFAULT_SAMPLER

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHAPES_MODEL_DIR = Path(__file__).resolve().parent.parent / "worker" / "demo_model" / "weights" / "shapes-64"
DEFAULTS_SUFFIX = ".sdfarm.json"


@dataclass(frozen=True)
class ModelDefaults:
    """What a job gets for the parameters it leaves out."""

    width: int = 512
    height: int = 512
    steps: int = 25
    sampler: str = DEFAULT_SAMPLER
    guidance_scale: float = 7.5


@dataclass(frozen=True)
class ModelOptions:
    """How to load a model, from its defaults file: a VAE override, configs for a single file, a checker."""

    vae: Path | None = None  # a diffusers AutoencoderKL folder or a .safetensors VAE
    config: Path | None = None  # a diffusers folder whose configs and tokenizers fit a single-file checkpoint
    safety_checker: bool = False  # run the diffusers safety checker when the weights include one
    # What a single file's UNet predicts: "epsilon" or "v_prediction" (weights cannot tell).
    prediction_type: str = "epsilon"


@dataclass(frozen=True)
class ModelEntry:
    """One servable model: where its weights are and what it defaults to."""

    name: str
    path: Path
    kind: str  # "diffusers" (a folder) or "single_file" (a .safetensors checkpoint)
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    builtin: bool = False
    architecture: str = "sd1"  # "sd1", "sd2", "sdxl", or "unknown" when the files do not say
    options: ModelOptions = field(default_factory=ModelOptions)
    inpainting: bool = False  # a UNet that also takes the mask and masked image (9 input channels)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the API and the CLI (hashes the weights once per file version)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "architecture": self.architecture,
            "hash": short_hash(self.path) if self.path.exists() else None,
            "builtin": self.builtin,
            "inpainting": self.inpainting,
            "defaults": asdict(self.defaults),
        }


class UnknownModelError(LookupError):
    """Raised for a model name that is not in the catalog."""


class ModelCatalog:
    """Looks models up by name; cheap to build, reads only small config files."""

    def __init__(self, models_dir: Path, default_model: str | None = None, tiny_model_dir: Path | None = None):
        self.models_dir = models_dir
        self.tiny_model_dir = tiny_model_dir or models_dir / "tiny"
        self._configured_default = default_model

    def entries(self) -> dict[str, ModelEntry]:
        """Every model by name: built-ins, then the models directory, then an explicit SDFARM_MODEL path."""
        found: dict[str, ModelEntry] = {}
        if (SHAPES_MODEL_DIR / "model_index.json").is_file():
            found["shapes"] = _entry_for("shapes", SHAPES_MODEL_DIR, builtin=True)
        found["tiny"] = ModelEntry(
            "tiny", self.tiny_model_dir, "diffusers", ModelDefaults(64, 64, 20), builtin=True, architecture="sd1"
        )
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.iterdir()):
                name = path.stem if path.suffix == ".safetensors" else path.name
                if path == self.tiny_model_dir or not MODEL_NAME.match(name):
                    continue
                if (path / "model_index.json").is_file() or path.suffix == ".safetensors":
                    found[name] = _entry_for(name, path)
        configured = self._configured_default
        if configured and configured not in found:
            path = Path(configured).expanduser()
            if path.exists():
                name = path.stem if path.suffix == ".safetensors" else path.name
                found[name] = _entry_for(name, path.resolve())
        return found

    @property
    def default_name(self) -> str:
        """The model a job gets when it names none."""
        configured = self._configured_default
        if configured:
            path = Path(configured).expanduser()
            if path.exists():
                return path.stem if path.suffix == ".safetensors" else path.name
            return configured
        return "shapes" if (SHAPES_MODEL_DIR / "model_index.json").is_file() else "tiny"

    def get(self, name: str | None) -> ModelEntry:
        """The entry for `name` (the default model when None); raises UnknownModelError."""
        name = name or self.default_name
        entry = self.entries().get(name)
        if entry is None:
            raise UnknownModelError(name)
        return entry


def _entry_for(name: str, path: Path, builtin: bool = False) -> ModelEntry:
    kind = "single_file" if path.suffix == ".safetensors" else "diffusers"
    sidecar = _sidecar(path, kind)
    architecture = sidecar.get("architecture") or detect_architecture(path, kind)
    options = _read_options(path, sidecar, architecture)
    defaults = _read_defaults(path, kind, architecture, sidecar, options)
    inpainting = unet_input_channels(path, kind) == INPAINTING_CHANNELS
    return ModelEntry(name, path, kind, defaults, builtin, architecture, options, inpainting)


def _sidecar(path: Path, kind: str) -> dict[str, Any]:
    """The model's defaults file (`sdfarm.json` in a folder, `<file>.sdfarm.json` beside a checkpoint)."""
    sidecar = path.with_name(path.name + DEFAULTS_SUFFIX) if kind == "single_file" else path / "sdfarm.json"
    if not sidecar.is_file():
        return {}
    try:
        values = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # preflight reports a broken model; the catalog must still list the others
    return values if isinstance(values, dict) else {}


def _read_defaults(
    path: Path, kind: str, architecture: str, sidecar: dict[str, Any], options: ModelOptions
) -> ModelDefaults:
    """Defaults from the defaults file, else the native size from the UNet config or the architecture."""
    values: dict[str, Any] = {}
    if architecture in NATIVE_SIDE:
        values["width"] = values["height"] = NATIVE_SIDE[architecture]
    if kind == "single_file" and architecture == "sd2" and options.prediction_type == "v_prediction":
        values["width"] = values["height"] = 768  # SD 2.x v-prediction models are the 768 px ones
    if kind == "diffusers":
        unet_config = path / "unet" / "config.json"
        if unet_config.is_file():
            sample_size = json.loads(unet_config.read_text()).get("sample_size")
            if isinstance(sample_size, int):
                values["width"] = values["height"] = sample_size * 8
    values.update({k: v for k, v in sidecar.items() if k in ModelDefaults.__dataclass_fields__})
    return ModelDefaults(**values)


def _read_options(path: Path, sidecar: dict[str, Any], architecture: str) -> ModelOptions:
    """Loading options; relative paths are relative to the folder that holds the model."""

    def resolve(value: Any) -> Path | None:
        if not isinstance(value, str) or not value:
            return None
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (path.parent / candidate)

    return ModelOptions(
        vae=resolve(sidecar.get("vae")),
        config=resolve(sidecar.get("config")),
        safety_checker=bool(sidecar.get("safety_checker", False)),
        prediction_type=_prediction_type(path, sidecar, architecture),
    )


def _prediction_type(path: Path, sidecar: dict[str, Any], architecture: str) -> str:
    """The defaults file's choice, else the checkpoint's own `modelspec.prediction_type`, else the release's.

    SD 2.x defaults to v-prediction: 2.0-v and 2.1 (the 768 px models most people use) predict v,
    only the 512 px "base" models predict noise; those say `"prediction_type": "epsilon"`.
    """
    declared = sidecar.get("prediction_type")
    if declared is None and path.suffix == ".safetensors":
        try:
            declared = safetensors_header(path)[1].get("modelspec.prediction_type")
        except (OSError, ValueError):
            declared = None
    if declared is None:
        return "v_prediction" if architecture == "sd2" else "epsilon"
    return PREDICTION_TYPES.get(str(declared).lower(), str(declared))


# Spellings seen in defaults files and in the modelspec metadata of checkpoints.
PREDICTION_TYPES = {"epsilon": "epsilon", "eps": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}


# Inpainting UNets take the noisy latents (4), the mask (1) and the masked image's latents (4).
INPAINTING_CHANNELS = 9


def unet_input_channels(path: Path, kind: str) -> int | None:
    """The UNet's input channels from its config or the checkpoint header (no weights read); None if unknown."""
    try:
        if kind == "single_file":
            return safetensors_header(path)[0]["model.diffusion_model.input_blocks.0.0.weight"][1]
        return json.loads((path / "unet" / "config.json").read_text()).get("in_channels", 4)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


# The size each architecture was trained at (SD 2.x 768 models say so in their UNet config).
NATIVE_SIDE = {"sd1": 512, "sd2": 512, "sdxl": 1024}


def detect_architecture(path: Path, kind: str) -> str:
    """sd1, sd2 or sdxl from the files' names and configs (no weights are read); "unknown" otherwise."""
    try:
        if kind == "single_file":
            return architecture_of_keys(safetensors_header(path)[0])
        index = json.loads((path / "model_index.json").read_text())
        if "text_encoder_2" in index or "XL" in index.get("_class_name", ""):
            return "sdxl"
        text_config = path / "text_encoder" / "config.json"
        # SD 2.x uses OpenCLIP, whose transformer has GELU where OpenAI's CLIP (SD 1.x) has quick GELU.
        if text_config.is_file() and json.loads(text_config.read_text()).get("hidden_act") == "gelu":
            return "sd2"
        return "sd1"
    except (OSError, ValueError):
        return "unknown"


def architecture_of_keys(keys: Iterable[str]) -> str:
    """The architecture of an original-layout (LDM) checkpoint, from its text encoders' key names."""
    keys = list(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    return "unknown"


def safetensors_header(file: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor shapes by name and the metadata of a .safetensors file: 8 bytes of length, then JSON.

    No weights are read. The catalog is rebuilt for every request, so a header is parsed once
    per file version (path, size, modification time) and then served from memory.
    """
    stat = file.stat()
    return _parse_header(str(file), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _parse_header(file: str, _size: int, _mtime_ns: int) -> tuple[dict[str, list[int]], dict[str, str]]:
    with open(file, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if not 2 <= length <= 100 * 1024 * 1024:
            raise ValueError(f"{file} is not a safetensors file")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{file} is not a safetensors file")
    metadata = header.pop("__metadata__", None)
    shapes = {key: value["shape"] for key, value in header.items() if isinstance(value, dict) and "shape" in value}
    return shapes, metadata if isinstance(metadata, dict) else {}


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def short_hash(path: Path) -> str:
    """The 10-hex-digit SHA-256 prefix people use to name checkpoints (A1111's "Model hash").

    For a diffusers folder it is the hash of its weight files' hashes in path order, so
    it changes when any component changes. Results are cached by path, size and mtime.
    """
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.safetensors") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file), stat.st_size, stat.st_mtime_ns)
        with _hash_lock:
            cached = _hash_cache.get(key)
        if cached is None:
            cached = _stored_hash(file, key) or _sha256_file(file)
            with _hash_lock:
                _hash_cache[key] = cached
            if stat.st_size >= PERSIST_HASH_BYTES:
                _store_hash(file, key, cached)
        if len(files) == 1:
            return cached[:10]
        digest.update(f"{file.relative_to(path)}:{cached}\n".encode())
    return digest.hexdigest()[:10]


HASH_CACHE_NAME = ".sdfarm-hashes.json"
PERSIST_HASH_BYTES = 64 * 1024 * 1024  # smaller files hash in well under a second: not worth a file


def _stored_hash(file: Path, key: tuple[str, int, int]) -> str | None:
    """A hash saved beside the file by an earlier process, if the file has not changed since."""
    try:
        saved = json.loads((file.parent / HASH_CACHE_NAME).read_text()).get(file.name)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(saved, dict) and [saved.get("size"), saved.get("mtime_ns")] == [key[1], key[2]]:
        return saved.get("sha256")
    return None


def _store_hash(file: Path, key: tuple[str, int, int], digest: str) -> None:
    """Save the hash beside the file, so other processes (API, each worker) do not read 7 GB again."""
    cache_file = file.parent / HASH_CACHE_NAME
    try:
        try:
            saved = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            saved = {}
        if not isinstance(saved, dict):
            saved = {}
        saved[file.name] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
        staging = cache_file.with_name(f"{HASH_CACHE_NAME}.{threading.get_ident()}.{os.getpid()}")
        staging.write_text(json.dumps(saved, indent=0))
        staging.replace(cache_file)
    except OSError:
        pass  # a read-only models directory only costs hashing again in the next process


def _sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lora_path(lora_dir: Path, name: str) -> Path | None:
    """The LoRA adapter file for `name` in lora_dir, or None; a name never reaches outside the directory."""
    if not MODEL_NAME.match(name):
        return None
    candidate = (lora_dir / f"{name}.safetensors").resolve()
    if candidate.parent != lora_dir.resolve() or not candidate.is_file():
        return None
    return candidate


def list_loras(lora_dir: Path) -> dict[str, Path]:
    """Every LoRA adapter in lora_dir by name (the file stem)."""
    if not lora_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(lora_dir.glob("*.safetensors")) if p.is_file() and MODEL_NAME.match(p.stem)}
