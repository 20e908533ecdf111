"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify
from pydantic import BaseModel

from api import schemas
from api.ids import MAX_ID
from models.spec import JobSpec

# (method, rule) -> (request model, success status, response model, is a file)
_OPERATIONS: dict[tuple[str, str], tuple[type[BaseModel] | None, int, type[BaseModel] | None, str | None]] = {
    ("POST", "/api/v1/jobs"): (JobSpec, 202, schemas.JobOut, None),
    ("GET", "/api/v1/jobs"): (None, 200, schemas.JobPage, None),
    ("GET", "/api/v1/jobs/<id:job_id>"): (None, 200, schemas.JobOut, None),
    ("POST", "/api/v1/jobs/<id:job_id>/cancel"): (None, 200, schemas.JobOut, None),
    ("GET", "/api/v1/images"): (None, 200, schemas.ImagePage, None),
    ("GET", "/api/v1/images/<id:image_id>"): (None, 200, schemas.ImageOut, None),
    ("GET", "/api/v1/images/<id:image_id>/file"): (None, 200, None, "image/png"),
    ("GET", "/api/v1/images/<id:image_id>/thumbnail"): (None, 200, None, "image/webp"),
    ("GET", "/api/v1/workers"): (None, 200, schemas.WorkerList, None),
    ("GET", "/api/v1/models"): (None, 200, schemas.ModelList, None),
    ("GET", "/api/v1/samplers"): (None, 200, schemas.SamplerList, None),
    ("POST", "/api/v1/png-info"): (schemas.PngInfoIn, 200, schemas.PngInfoOut, None),
    ("GET", "/api/v1/openapi.json"): (None, 200, None, "application/json"),
    ("GET", "/healthz"): (None, 200, schemas.Health, None),
}

# Operations that also take `multipart/form-data`: the parts and what each holds.
_MULTIPART: dict[str, dict[str, Any]] = {
    "/api/v1/jobs": {
        "type": "object",
        "required": ["job"],
        "properties": {
            "job": {"type": "string", "description": "The job as JSON (the application/json body)."},
            "init_image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP init image."},
            "mask_image": {
                "type": "string",
                "format": "binary",
                "description": "Inpainting mask of the init image's size: white is repainted, black kept.",
            },
        },
    },
    "/api/v1/png-info": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": "The PNG."}},
    },
}

_QUERY: dict[str, list[str]] = {
    "/api/v1/jobs": ["limit", "cursor"],
    "/api/v1/images": ["limit", "cursor", "job_id", "status", "model", "seed"],
    "/api/v1/jobs/<id:job_id>": ["images"],
}
_QUERY_SCHEMAS = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 500},
    "cursor": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "job_id": {"type": "integer", "minimum": 0},
    "seed": {"type": "integer", "minimum": 0},
    "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]},
    "model": {"type": "string"},
    "images": {"type": "string", "enum": ["0", "1"]},
}


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for name in re.findall(r"<id:(\w+)>", rule):
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return re.sub(r"<id:(\w+)>", r"{\1}", rule), params


def build_document(authenticated: bool = False) -> dict[str, Any]:
    """Assemble the document; component schemas come from pydantic."""
    from api.routes import API_ROUTES

    components: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            components[name] = definition
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"description": "Error", "content": {"application/json": {"schema": ref(schemas.ErrorOut)}}}
    paths: dict[str, Any] = {}
    for route in API_ROUTES:
        for method in route.methods:
            request_model, status, response_model, media = _OPERATIONS[(method, route.rule)]
            path, params = _openapi_path(route.rule)
            params += [
                {"name": q, "in": "query", "required": False, "schema": _QUERY_SCHEMAS[q]}
                for q in _QUERY.get(route.rule, [])
            ]
            if response_model is not None:
                content = {"application/json": {"schema": ref(response_model)}}
            else:
                content = {
                    media: {
                        "schema": {"type": "string", "format": "binary"}
                        if media != "application/json"
                        else {"type": "object"}
                    }
                }
            operation: dict[str, Any] = {
                "summary": route.summary,
                "operationId": f"{method.lower()}_{route.view.__name__}",
                "parameters": params,
                "responses": {
                    str(status): {"description": route.summary, "content": content},
                    "4XX": error,
                    "503": error,
                },
            }
            if route.view.__name__ in {"healthz", "openapi_document"}:
                operation["security"] = []  # public: load balancers and clients need them without a key
            if request_model is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(request_model)}},
                }
                if method == "POST" and route.rule in _MULTIPART:
                    operation["requestBody"]["content"]["multipart/form-data"] = {"schema": _MULTIPART[route.rule]}
            paths.setdefault(path, {})[method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sdfarm",
            "version": "1",
            "description": "Bulk Stable Diffusion jobs, queued on Redis, run by GPU workers.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if authenticated:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def openapi_document() -> Response:
    """GET /api/v1/openapi.json."""
    from api.farm import farm

    return jsonify(build_document(farm().settings.auth_required()))
