"""The HTTP side of sdfarm: a Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

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


def content_security_policy(store_origin: str | None) -> str:
    """The CSP; images may also come from the object store's origin when files are served by redirect."""
    if not store_origin:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("img-src 'self'", f"img-src 'self' {store_origin}", 1)


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
    """Host guard, same-origin check, API keys and rate limits before each request; CSP on every response."""
    from api.auth import authenticate
    from api.errors import ApiError
    from api.gallery.guard import require_same_origin
    from api.host_guard import require_allowed_host
    from api.rate_limits import register_rate_limits
    from api.routes import public_endpoints

    public = PUBLIC_ENDPOINTS | public_endpoints()
    farm = app.extensions["sdfarm"]
    settings = farm.settings
    policy = content_security_policy(farm.store.redirect_origin() if settings.object_redirects else None)

    @app.before_request
    def _authenticate() -> None:
        # Every request, public ones too: with auth off, only loopback Host names (DNS rebinding).
        require_allowed_host(settings)
        # Every state-changing request, API or page: a key in a cookie must not be usable by another site.
        require_same_origin()
        if request.endpoint not in public:
            try:
                authenticate()
            except ApiError as error:
                if error.status != 401:
                    raise
                g.unauthenticated = error  # raised after the rate limits, which count 401s per address

    # flask-limiter's check runs here: after the key is known, before a 401 is answered.
    register_rate_limits(app, settings, public)

    @app.before_request
    def _refuse_unauthenticated() -> None:
        error = g.pop("unauthenticated", None)
        if error is not None:
            raise error

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def register_gallery(app: Flask) -> None:
    """The browser gallery's pages (api/gallery/; URLs in api/routes.py's GALLERY_ROUTES)."""
    from api.gallery import register_gallery_blueprint

    register_gallery_blueprint(app)


def register_routes(app: Flask) -> None:
    """The JSON API's URLs (see api/routes.py)."""
    from api.routes import register_api_routes

    register_api_routes(app)
    logging.getLogger(__name__).debug("registered %d rules", len(list(app.url_map.iter_rules())))
