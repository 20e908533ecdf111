"""Per-key and per-address request limits (flask-limiter, counted in Redis so every API process
shares them), and the cap on a key's queued images.

- Each API key may make SDFARM_RATE_LIMIT_PER_MINUTE requests a minute, over every route that
  needs a key: the JSON API, the gallery and the A1111 API alike.
- Each client address may be refused SDFARM_AUTH_FAILURES_PER_MINUTE times a minute (a `401`: an
  unknown key, none at all, a failed gallery sign-in, a wrong metrics token); after that it gets `429` until the
  window ends, unless it sends a valid key. Guessing keys is slow, and costs no database lookup.

Answers carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`, and `429`s
`Retry-After`. When Redis cannot be reached each process counts on its own until it is back.
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.farm import farm
from models.image import Image, ImageStatus
from models.settings import Settings

SIGN_IN_ENDPOINT = "gallery.sign_in"
METRICS_ENDPOINT = "metrics.metrics"


def caller_key() -> str:
    """The bucket of a request made with a key: the key's id."""
    return f"key:{g.api_key.id}"


def client_address() -> str:
    """The bucket of a request without a valid key: the client's address."""
    return f"address:{request.remote_addr or 'unknown'}"


def _per_key_limit() -> str:
    return f"{farm().settings.rate_limit_per_minute} per minute"


def _without_key() -> bool:
    return g.get("api_key") is None or farm().settings.rate_limit_per_minute == 0


def _failures_limit() -> str:
    return f"{farm().settings.auth_failures_per_minute} per minute"


def _is_unauthorized(response: Response) -> bool:
    return response.status_code == 401


def register_rate_limits(app: Flask, settings: Settings, public: set[str]) -> Limiter:
    """Attach flask-limiter; its check runs where this is called among the app's before_request hooks.

    `public` names the endpoints that need no key: they never answer 401, but for the sign-in form.
    """

    def cannot_fail_auth() -> bool:
        current = farm().settings
        if current.auth_failures_per_minute == 0 or g.get("api_key") is not None:
            return True
        # Two public endpoints answer 401 too: the sign-in form's POST, and /metrics with a token set.
        if request.endpoint == SIGN_IN_ENDPOINT:
            return request.method != "POST" or not current.auth_required()
        if request.endpoint == METRICS_ENDPOINT:
            return current.metrics_token is None
        return request.endpoint in public or not current.auth_required()

    limiter = Limiter(
        client_address,
        app=app,
        application_limits=[
            ApplicationLimit(
                _per_key_limit,
                key_function=caller_key,
                scope="requests",
                exempt_when=_without_key,
                error_message=lambda: (
                    f"rate limit: {farm().settings.rate_limit_per_minute} requests per minute for this API key "
                    "(SDFARM_RATE_LIMIT_PER_MINUTE); retry after the seconds in Retry-After"
                ),
            ),
            ApplicationLimit(
                _failures_limit,
                key_function=client_address,
                scope="unauthorized",
                exempt_when=cannot_fail_auth,
                deduct_when=_is_unauthorized,
                error_message=lambda: (
                    f"too many requests without a valid API key from this address: "
                    f"{farm().settings.auth_failures_per_minute} per minute (SDFARM_AUTH_FAILURES_PER_MINUTE); "
                    "retry after the seconds in Retry-After"
                ),
            ),
        ],
        storage_uri=settings.redis_url,
        strategy="fixed-window",
        key_prefix="sdfarm:limits",
        headers_enabled=True,
        # A broker outage must not take the read API down: count in memory until Redis is back.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        # Unrouted URLs (404) can answer 401 too; without a name flask-limiter would skip them.
        request_identifier=lambda: request.endpoint or "unrouted",
    )
    return limiter


def check_queued_cap(session: Session, owner_key_id: int | None, new_images: int) -> None:
    """429 when this job would take the key past its cap on images waiting or running."""
    if owner_key_id is None:
        return
    cap = farm().settings.max_queued_per_key
    waiting = session.scalar(
        select(func.count()).where(
            Image.owner_key_id == owner_key_id, Image.status.in_([ImageStatus.QUEUED, ImageStatus.RUNNING])
        )
    )
    if waiting + new_images > cap:
        raise ApiError(
            429,
            f"this key has {waiting} images waiting; with {new_images} more it would pass its cap of {cap}. "
            "Wait for some to finish or cancel a job.",
            headers={"Retry-After": "60"},
        )
