"""The jobs page's submit form: form fields to a JobSpec body, and the API's errors back to each field.

Validation is the API's own (api/job_checks.py, then submit_job's), so the form reports exactly what the
JSON API would, every error at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api.errors import ApiError
from api.job_checks import validate_job
from models.spec import JobSpec

# Form field name -> label; the names are JobSpec's, so an error's field maps straight back.
FIELDS: dict[str, str] = {
    "prompts": "Prompts, one per line",
    "num_images": "Images per prompt",
    "negative_prompt": "Negative prompt",
    "steps": "Steps",
    "guidance_scale": "Guidance (CFG scale)",
    "width": "Width",
    "height": "Height",
    "seed": "Seed",
    "scheduler": "Sampler",
    "model": "Model",
    "priority": "Priority",
    "loras": "LoRAs (name:weight, ...)",
    "clip_skip": "Clip skip",
    "init_image_id": "Init image: a gallery image id",
    "init_image": "or upload a picture",
    "strength": "Denoising strength",
    "mask_image": "Inpainting mask (white is repainted)",
}
UPLOADS = ("init_image", "mask_image")  # file parts, sent as multipart uploads like the API's
DEFAULTS = {"num_images": "1", "priority": "5"}


@dataclass
class JobForm:
    """The submitted (or prefilled) values as text, and the errors found per field."""

    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    errors: dict[str, list[str]] = field(default_factory=dict)
    form_errors: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JobForm:
        """Read the known fields; everything else is ignored."""
        values = dict(DEFAULTS)
        for name in FIELDS:
            value = data.get(name)
            if value is not None:
                values[name] = str(value)
        return cls(values=values)

    @classmethod
    def from_spec_body(cls, body: Mapping[str, Any]) -> JobForm:
        """Prefill from a JobSpec body (such as "make more like this" builds)."""
        data = dict(body)
        data["prompts"] = "\n".join(body.get("prompts") or [])
        if body.get("loras"):
            data["loras"] = ", ".join(f"{lora['name']}:{lora.get('weight', 1.0)}" for lora in body["loras"])
        return cls.from_mapping(data)

    def spec_body(self) -> dict[str, Any]:
        """The JSON body the API would get: one prompt per non-blank line, blank fields left out."""
        body: dict[str, Any] = {}
        for name in FIELDS:
            value = self.values.get(name, "").strip()
            if name in UPLOADS:
                continue
            if name == "prompts":
                body[name] = [line.strip() for line in value.splitlines() if line.strip()]
            elif name == "loras" and value:
                body[name] = [_lora(part) for part in value.split(",") if part.strip()]
            elif name == "negative_prompt":
                body[name] = value
            elif value:
                body[name] = value  # JobSpec converts numbers and reports text that is not one
        return body

    def validate(self, context: dict[str, Any]) -> JobSpec | None:
        """The JobSpec, or None with the errors recorded."""
        try:
            return validate_job(self.spec_body(), context)  # every error at once, as the API reports them
        except ApiError as error:
            self.add_errors(error.fields)
            return None

    def add_errors(self, fields: list[dict[str, str]]) -> None:
        """Attach API-style `{field, reason}` errors to their form fields (`prompts.3` -> prompts)."""
        for item in fields:
            name = item["field"].split(".", 1)[0]
            if name in FIELDS:
                self.errors.setdefault(name, []).append(item["reason"])
            else:
                self.form_errors.append(item["reason"])


def _lora(text: str) -> dict[str, Any]:
    """`name:weight` (or a bare name, weight 1) as JobSpec's LoRA object; JobSpec checks both parts."""
    name, _, weight = text.strip().partition(":")
    lora: dict[str, Any] = {"name": name.strip()}
    if weight.strip():
        lora["weight"] = weight.strip()
    return lora
