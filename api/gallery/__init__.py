"""The browser gallery: server-rendered pages over the same data and services as the JSON API."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from api.errors import ApiError


def make_blueprint() -> Blueprint:
    """A fresh blueprint with the pages of api/routes.py's GALLERY_ROUTES (one per app, as tests build many)."""
    from api.routes import GALLERY_ROUTES

    blueprint = Blueprint("gallery", __name__)
    for route in GALLERY_ROUTES:
        blueprint.add_url_rule(route.rule, view_func=route.view, methods=list(route.methods))
    blueprint.context_processor(_sign_in_state)
    blueprint.add_app_template_filter(_hide_paths, "hide_paths")
    # Errors raised while serving a page become HTML pages; the JSON API's handlers stay as they are.
    blueprint.register_error_handler(ApiError, _api_error_page)
    blueprint.register_error_handler(HTTPException, _http_error_page)
    return blueprint


def _sign_in_state() -> dict:
    from api.farm import farm

    return {"auth_on": farm().settings.auth_required(), "signed_in_key": g.get("api_key")}


def _hide_paths(text: str | None) -> str | None:
    from api.visibility import hide_paths

    return hide_paths(text)


def register_gallery_blueprint(app: Flask) -> None:
    """Add the gallery's pages to the app."""
    app.register_blueprint(make_blueprint())


def _api_error_page(error: ApiError) -> Response | tuple[Response | str, int, dict]:
    if error.status == 401 and request.method == "GET":
        return redirect(url_for("gallery.sign_in_page", next=request.full_path.rstrip("?")), code=303)
    html = render_template("error.html", status=error.status, message=error.message, fields=error.fields)
    return html, error.status, error.headers


def _http_error_page(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    return render_template("error.html", status=status, message=error.description or error.name, fields=[]), status
