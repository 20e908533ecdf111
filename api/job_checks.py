"""Every error of a submitted job in one answer: the schema's, the job-wide rules, the model and the LoRAs.

Pydantic stops before the job-wide rules once a field is wrong, and the model and LoRA names are
checked against the farm's catalog, which the schema does not know; without this a client fixed
one error per round trip.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api.errors import ApiError, fields_from_validation
from api.farm import farm
from models.catalog import UnknownModelError, list_loras, lora_path
from models.spec import JobSpec, whole_job_errors


def validate_job(document: dict[str, Any], context: dict[str, Any]) -> JobSpec:
    """The job's JobSpec, or one 422 naming every bad field at once."""
    fields: list[dict[str, str]] = []
    spec = None
    try:
        spec = JobSpec.model_validate(document, context=context)
    except ValidationError as error:
        fields = fields_from_validation(error)
        # The job-wide rules did not run (pydantic checks them only on valid fields): check them here.
        fields += [{"field": "body", "reason": reason} for reason in whole_job_errors(document)]
    # A name the schema already refused (a control character, say) is not looked up as well.
    refused = {entry["field"] for entry in fields}
    fields += [entry for entry in catalog_errors(document) if entry["field"] not in refused]
    if fields:
        raise ApiError(422, "invalid job", fields)
    return spec


def catalog_errors(document: dict[str, Any]) -> list[dict[str, str]]:
    """An unknown model, unknown or repeated LoRA names (only where the names themselves are well formed)."""
    errors = []
    catalog = farm().catalog
    model = document.get("model")
    if model is None or (isinstance(model, str) and len(model) <= 200):
        try:
            catalog.get(model)
        except UnknownModelError:
            known = ", ".join(sorted(catalog.entries())) or "none"
            errors.append({"field": "model", "reason": f"unknown model {model!r}; known: {known}"})
    loras = document.get("loras")
    if isinstance(loras, list) and len(loras) <= 8:
        lora_dir = farm().settings.resolved_lora_dir
        seen = set()
        for position, lora in enumerate(loras):
            name = lora.get("name") if isinstance(lora, dict) else None
            if not isinstance(name, str) or len(name) > 100:
                continue
            if lora_path(lora_dir, name) is None:
                known = ", ".join(sorted(list_loras(lora_dir))) or "none installed"
                errors.append({"field": f"loras.{position}.name", "reason": f"unknown LoRA {name!r}; known: {known}"})
            elif name in seen:
                errors.append({"field": f"loras.{position}.name", "reason": f"LoRA {name!r} is named twice"})
            seen.add(name)
    return errors
