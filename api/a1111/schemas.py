"""Request and response shapes of the A1111 API, with A1111's field names and defaults.

Requests accept unknown fields (clients send many options for A1111 features the farm does not
have); the ones that would change the picture are refused by name in generate.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

from models.spec import MAX_NAME_CHARS, MAX_PICTURE_CHARS, MAX_SEED

Picture = Annotated[str, StringConstraints(max_length=MAX_PICTURE_CHARS)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]


class Txt2ImgRequest(BaseModel):
    """POST /sdapi/v1/txt2img."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(default="", max_length=20_000)
    negative_prompt: str = Field(default="", max_length=20_000)
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1: random.")
    subseed: int = Field(default=-1, description="Ignored (variation seeds are not supported); `info` says so.")
    subseed_strength: float = 0.0
    sampler_name: str | None = Field(default=None, max_length=100)
    sampler_index: str | None = Field(default=None, max_length=100, description="Older name of sampler_name.")
    scheduler: str | None = Field(default=None, max_length=100, description="automatic, karras, ...")
    batch_size: int = Field(default=1, ge=1, le=64)
    n_iter: int = Field(default=1, ge=1, le=1000)
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0.0, le=30.0)
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    restore_faces: bool | None = None
    tiling: bool | None = None
    enable_hr: bool = False
    styles: list[Name] | None = Field(default=None, max_length=100)
    override_settings: dict[str, Any] | None = None
    script_name: Name | None = None
    alwayson_scripts: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False


class Img2ImgRequest(Txt2ImgRequest):
    """POST /sdapi/v1/img2img: txt2img's fields plus the picture to start from."""

    init_images: list[Picture] = Field(min_length=1, max_length=1, description="One base64 picture (or data URL).")
    mask: Picture | None = Field(default=None, description="Inpainting mask: white is repainted.")
    denoising_strength: float = Field(default=0.75, ge=0.0, le=1.0)
    include_init_images: bool = False


class GenerationResponse(BaseModel):
    """What txt2img and img2img answer."""

    images: list[str] = Field(description="Base64 PNGs, each with its infotext in a `parameters` chunk.")
    parameters: dict[str, Any] = Field(description="The request as understood, with defaults filled in.")
    info: str = Field(description="JSON: seed, all_seeds, all_prompts, infotexts, sdfarm's job_id, ...")


class ProgressResponse(BaseModel):
    """GET /sdapi/v1/progress: the caller's current request."""

    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


class SdModel(BaseModel):
    """An entry of GET /sdapi/v1/sd-models."""

    model_config = ConfigDict(protected_namespaces=())

    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class Sampler(BaseModel):
    """An entry of GET /sdapi/v1/samplers."""

    name: str
    aliases: list[str]
    options: dict[str, Any]


class Scheduler(BaseModel):
    """An entry of GET /sdapi/v1/schedulers."""

    name: str
    label: str
    aliases: list[str] | None
    default_rho: float | None
    need_inner_model: bool | None


class Lora(BaseModel):
    """An entry of GET /sdapi/v1/loras."""

    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class PngInfoRequest(BaseModel):
    """POST /sdapi/v1/png-info."""

    image: Picture = Field(description="Base64 or a data URL of the picture.")


class PngInfoResponse(BaseModel):
    """The picture's infotext, its other text chunks, and the infotext's fields by A1111's names."""

    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class Options(BaseModel):
    """GET/POST /sdapi/v1/options; only `sd_model_checkpoint` changes anything (the caller's default model)."""

    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: Name | None = None


class AnyObject(BaseModel):
    """A JSON object (cmd-flags, memory, scripts...)."""

    model_config = ConfigDict(extra="allow")


class SdModelList(RootModel[list[SdModel]]):
    """GET /sdapi/v1/sd-models."""


class A1111Samplers(RootModel[list[Sampler]]):
    """GET /sdapi/v1/samplers."""


class SchedulerList(RootModel[list[Scheduler]]):
    """GET /sdapi/v1/schedulers."""


class LoraList(RootModel[list[Lora]]):
    """GET /sdapi/v1/loras."""


class AnyList(RootModel[list[Any]]):
    """A JSON array (empty on the farm)."""
