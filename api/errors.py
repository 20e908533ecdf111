"""One error format for the whole API: `{"error": {"status", "message", "fields": [...]}}`."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An error a client can fix; becomes a 4xx JSON response."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []
        self.headers = headers or {}


def error_response(status: int, message: str, fields: list[dict[str, str]] | None = None, headers=None) -> Response:
    """Build the JSON error response."""
    response = jsonify({"error": {"status": status, "message": message, "fields": fields or []}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def fields_from_validation(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `{field, reason}` pairs; `field` is a dotted path such as `items.0.prompt`."""
    fields = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in detail["loc"]) or "body"
        reason = detail["msg"].removeprefix("Value error, ")
        fields.append({"field": location, "reason": reason})
    return fields


def register_error_handlers(app: Flask) -> None:
    """JSON bodies for every error, including Flask's own 404/405/413."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.fields, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        messages = {
            404: "not found",
            405: "method not allowed on this URL",
            413: f"request body too large; the limit is {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }
        return error_response(error.code or 500, messages.get(error.code, error.description or error.name))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_response(500, "internal error; the server log has the details")
