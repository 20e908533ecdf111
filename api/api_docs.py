"""`/api/docs`: the API reference page, Swagger UI served by the farm itself (no CDN).

The page's script is a file (`static/api-docs.js`), not inline, so the site's Content-Security-Policy
applies unchanged. Swagger UI's own files (version 5, which reads OpenAPI 3.1) come from the `dist`
folder of the `flask-swagger-ui` package; its blueprint is not used, as its page starts Swagger UI
with an inline script.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Response, render_template, send_from_directory

from api.errors import ApiError

# The only files of the bundle the page loads; anything else is 404.
ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js"}
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"


def api_docs_page() -> str:
    """GET /api/docs: the reference page for /api/v1/openapi.json."""
    return render_template("api_docs.html")


def api_docs_asset(name: str) -> Response:
    """GET /api/docs/<name>: Swagger UI's stylesheet and script."""
    if name not in ASSETS:
        raise ApiError(404, "not found")
    return send_from_directory(SWAGGER_UI_DIST, name, max_age=86400)
