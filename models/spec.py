"""The job specification: what a client may ask for, validated before anything is stored.

Used by the JSON API and by the gallery's form, so both report the same errors.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

from models.samplers import find_sampler, sampler_names

MAX_SEED = 2**32 - 1
MAX_SIDE = 2048
MIN_SIDE = 64
# Every string has a bound in the schema (and so in the OpenAPI document). Prompts have two: this
# ceiling, and the farm's SDFARM_MAX_PROMPT_CHARS (default 2000), checked by the validators below.
MAX_PROMPT_CHARS = 10_000
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2000
MAX_PICTURE_BYTES = 10 * 1024 * 1024
# A picture as base64 (4 characters per 3 bytes), with room for a data URL's header.
MAX_PICTURE_CHARS = MAX_PICTURE_BYTES * 4 // 3 + 256
DEFAULT_PROMPT_CHARS = 2000

Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_CHARS)]
NegativePrompt = Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]
_PROMPT_LIMIT = "at most SDFARM_MAX_PROMPT_CHARS characters (default 2000)"


class ItemSpec(BaseModel):
    """One prompt of a job, with its own negative prompt and seed when given."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt = Field(description=_PROMPT_LIMIT)
    negative_prompt: NegativePrompt | None = Field(default=None, description=_PROMPT_LIMIT)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _within_limit(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = _prompt_limit(info)
        if value is not None and len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the limit is {limit}")
        return value


class LoraSpec(BaseModel):
    """A LoRA adapter by name from the LoRA directory, with its weight."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    weight: float = Field(default=1.0, ge=-4.0, le=4.0)


class JobSpec(BaseModel):
    """A bulk generation job: `prompts` or `items`, times `num_images`, with common parameters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["prompts"]}, {"required": ["items"]}]},
    )

    prompts: list[Prompt] | None = Field(default=None, min_length=1)
    items: list[ItemSpec] | None = Field(default=None, min_length=1)
    num_images: int = Field(default=1, ge=1, le=1000, description="Images per prompt.")
    negative_prompt: NegativePrompt = Field(default="", description=_PROMPT_LIMIT)
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Image k of the job gets seed + k.")
    scheduler: str | None = Field(
        default=None,
        max_length=MAX_NAME_CHARS,
        description="Sampler: an A1111 name such as 'DPM++ 2M Karras' or a short one.",
    )
    model: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    priority: int = Field(default=5, ge=0, le=9, description="Higher runs first on the same model.")
    clip_skip: int = Field(default=1, ge=1, le=12)
    loras: list[LoraSpec] = Field(default_factory=list, max_length=8)
    strength: float | None = Field(default=None, ge=0.0, le=1.0, description="Image-to-image denoising strength.")
    init_image: str | None = Field(
        default=None, max_length=MAX_PICTURE_CHARS, description="Base64 or data URL of the init image (10 MB)."
    )
    init_image_id: int | None = Field(default=None, ge=1)
    mask_image: str | None = Field(
        default=None,
        max_length=MAX_PICTURE_CHARS,
        description="Inpainting mask, base64 or a data URL, the init image's size: white is repainted, black kept.",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="Told when the job ends (job.succeeded, job.failed, job.canceled), signed per Standard Webhooks.",
    )
    webhook_events: list[Literal["image.finished"]] = Field(
        default_factory=list, max_length=1, description="Extra events: 'image.finished' for each image."
    )

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError("must be a multiple of 8 (the VAE works on 8x8 pixel blocks)")
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is not None and find_sampler(value) is None:
            raise ValueError(f"unknown sampler {value!r}; choose one of: {', '.join(sampler_names())}")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompt_length(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        limit = _prompt_limit(info)
        for position, text in enumerate(value or []):
            if len(text) > limit:
                raise ValueError(f"prompt {position} is {len(text)} characters; the limit is {limit}")
        return value

    @field_validator("negative_prompt")
    @classmethod
    def _negative_length(cls, value: str, info: ValidationInfo) -> str:
        limit = _prompt_limit(info)
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the limit is {limit}")
        return value

    @model_validator(mode="after")
    def _prompts_xor_items(self, info: ValidationInfo) -> Self:
        if (self.prompts is None) == (self.items is None):
            raise ValueError("give exactly one of 'prompts' (a list of strings) or 'items' (a list of objects)")
        if self.init_image is not None and self.init_image_id is not None:
            raise ValueError("give at most one of 'init_image' and 'init_image_id'")
        cap = (info.context or {}).get("max_images_per_job")
        if cap is not None and self.total > cap:
            raise ValueError(f"this job asks for {self.total} images; the limit per job is {cap}")
        return self

    @property
    def total(self) -> int:
        """Number of images the job asks for."""
        return len(self.prompts or self.items or []) * self.num_images

    def expanded_items(self) -> list[ItemSpec]:
        """The prompts as items, in order (before `num_images` is applied)."""
        if self.items is not None:
            return self.items
        # Already validated (with the farm's limits, which a new validation here would not know).
        return [ItemSpec.model_construct(prompt=prompt) for prompt in self.prompts or []]


def _prompt_limit(info: ValidationInfo) -> int:
    """The farm's prompt limit (from settings, through the validation context), never above the ceiling."""
    return min((info.context or {}).get("max_prompt_chars", DEFAULT_PROMPT_CHARS), MAX_PROMPT_CHARS)
