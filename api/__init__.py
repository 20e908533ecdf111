"""The HTTP side of sdfarm: a Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from api.ids import IdConverter
from models.settings import Settings

# Pages and files that need no key; API routes say so themselves (`public` in api/routes.py).
PUBLIC_ENDPOINTS = {
    "static",
    "gallery.sign_in_page",
    "gallery.sign_in",
    "gallery.sign_out",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; nothing connects to the database or Redis until a request needs it."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.url_map.converters["id"] = IdConverter
    register_farm(app, settings)
    register_errors(app)
    register_security(app)
    register_input_checks(app)
    register_routes(app)
    register_gallery(app)
    return app


def register_farm(app: Flask, settings: Settings) -> None:
    """Attach the Farm (database, store, queue, catalog) and close sessions after each request."""
    from api.farm import Farm, close_db

    app.extensions["sdfarm"] = Farm.from_settings(settings)
    app.teardown_appcontext(close_db)


def register_errors(app: Flask) -> None:
    """JSON error bodies everywhere."""
    from api.errors import register_error_handlers

    register_error_handlers(app)


def register_security(app: Flask) -> None:
    """API keys before each request; CSP and nosniff on every response."""
    from api.auth import authenticate
    from api.gallery.guard import require_same_origin
    from api.rate_limits import check_rate_limit
    from api.routes import public_endpoints

    public = PUBLIC_ENDPOINTS | public_endpoints()

    @app.before_request
    def _authenticate() -> None:
        # Every state-changing request, API or page: a key in a cookie must not be usable by another site.
        require_same_origin()
        if request.endpoint not in public:
            authenticate()
            check_rate_limit()

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def register_gallery(app: Flask) -> None:
    """The browser gallery's pages (api/gallery/; URLs in api/routes.py's GALLERY_ROUTES)."""
    from api.gallery import register_gallery_blueprint

    register_gallery_blueprint(app)


def register_input_checks(app: Flask) -> None:
    """Query-string parameters with control characters get 422 (api/query_text.py)."""
    from api.query_text import register_query_checks

    register_query_checks(app)


def register_routes(app: Flask) -> None:
    """The JSON API's URLs (see api/routes.py)."""
    from api.routes import register_api_routes

    register_api_routes(app)
    logging.getLogger(__name__).debug("registered %d rules", len(list(app.url_map.iter_rules())))
