"""The OpenAPI 3.1 document, generated from the route table (api/routes.py) and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify
from pydantic import BaseModel

from api import schemas
from api.ids import MAX_ID


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for name in re.findall(r"<id:(\w+)>", rule):
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return re.sub(r"<id:(\w+)>", r"{\1}", rule), params


def build_document(settings) -> dict[str, Any]:
    """Assemble the document from the route table; component schemas come from pydantic."""
    from api.routes import served_routes

    authenticated = settings.auth_required()

    components: dict[str, Any] = {}

    def add(name: str, definition: dict[str, Any]) -> None:
        # Two models of one name (the farm's and A1111's) would silently document one as the other.
        if components.get(name, definition) != definition:
            raise ValueError(f"two schemas are named {name!r}; rename one")
        components[name] = definition

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            add(name, definition)
        add(model.__name__, schema)
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"description": "Error", "content": {"application/json": {"schema": ref(schemas.ErrorOut)}}}
    paths: dict[str, Any] = {}
    for route in served_routes(settings):
        for method in route.methods if route.in_openapi else ():
            path, params = _openapi_path(route.rule)
            params += [
                {"name": q.name, "in": q.location, "required": False, "schema": q.schema}
                | ({"description": q.description} if q.description else {})
                for q in route.query
            ]
            if route.response is not None:
                content = {"application/json": {"schema": ref(route.response)}}
            elif route.media == "application/json":
                content = {"application/json": {"schema": {"type": "object"}}}
            else:
                content = {route.media or "text/plain": {"schema": {"type": "string", "format": "binary"}}}
            name = route.endpoint or route.view.__name__
            operation: dict[str, Any] = {
                "summary": route.summary,
                "tags": [route.tag],
                "operationId": f"{method.lower()}_{route.tag}_{name}".replace("-", "_"),
                "parameters": params,
                "responses": {
                    str(route.status): {"description": route.summary, "content": content},
                    "4XX": error,
                    "503": error,
                },
            }
            if route.public:
                operation["security"] = []  # load balancers, scrapers and clients need these without a key
            if route.request is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(route.request)}},
                }
                if route.multipart is not None:
                    operation["requestBody"]["content"]["multipart/form-data"] = {"schema": route.multipart}
            for status, description in route.also:
                operation["responses"][str(status)] = {"description": description, "content": content}
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
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic", "description": "Any user name; the API key as the password."},
        }
        document["security"] = [{"bearer": []}, {"basic": []}]
    return document


def openapi_document() -> Response:
    """GET /api/v1/openapi.json."""
    from api.farm import farm

    return jsonify(build_document(farm().settings))
