"""Reading a JSON body safely: content type, syntax, nesting depth, then the pydantic model."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, fields_from_validation

Model = TypeVar("Model", bound=BaseModel)
MAX_DEPTH = 16


def json_body() -> Any:
    """The request's JSON document; 415 for another content type, 400 for bad or too deeply nested JSON."""
    if not request.is_json:
        raise ApiError(415, "send the body as JSON with the header Content-Type: application/json")
    raw = request.get_data(cache=True)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"malformed JSON: {error}") from None
    if _depth(document) > MAX_DEPTH:
        raise ApiError(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    return document


def json_object() -> dict[str, Any]:
    """The request's JSON body, which must be an object; 422 otherwise."""
    document = json_body()
    if not isinstance(document, dict):
        raise ApiError(422, "the body must be a JSON object", [{"field": "body", "reason": "not an object"}])
    return document


def parse_body(model: type[Model], context: dict[str, Any] | None = None) -> Model:
    """Validate the JSON body against `model`; 422 naming each bad field."""
    document = json_object()
    try:
        return model.model_validate(document, context=context)
    except ValidationError as error:
        raise ApiError(422, "invalid job", fields_from_validation(error)) from None


def _depth(document: Any) -> int:
    # Iterative, so a hostile document cannot exhaust the stack here either.
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return deepest
