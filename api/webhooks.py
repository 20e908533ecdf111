"""Webhooks on the API side: URLs checked at submit, per-key settings, and each job's delivery log."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from api.auth import owner_id
from api.errors import ApiError
from api.farm import db, farm
from api.request_body import parse_body
from api.schemas import (
    WebhookAttemptOut,
    WebhookDeliveryList,
    WebhookDeliveryOut,
    WebhookSettingsIn,
    WebhookSettingsOut,
)
from models.key_options import read_options, save_options
from models.webhook import WebhookAttempt, WebhookDelivery
from models.webhook_address import RefusedWebhookURL, allowed_address
from models.webhook_secret import new_secret

MAX_DELIVERIES = 1000


def check_webhook_url(url: str, field: str, owner_key_id: int | None) -> None:
    """422 naming `field` if the farm will not call `url`, or nothing could sign its events."""
    settings = farm().settings
    try:
        allowed_address(url, settings.webhook_allow_private)
    except RefusedWebhookURL as error:
        raise ApiError(422, "invalid webhook URL", [{"field": field, "reason": str(error)}]) from None
    options = read_options(db(), owner_key_id)
    if settings.webhook_secret is None and (options is None or options.webhook_secret is None):
        reason = (
            "no secret to sign webhooks with: the farm has no SDFARM_WEBHOOK_SECRET and this key has none "
            "(PUT /api/v1/webhook-settings with new_secret=true)"
        )
        raise ApiError(422, "webhooks are not set up", [{"field": field, "reason": reason}])


def job_webhooks(job_id: int) -> Response:
    """GET /api/v1/jobs/<id>/webhooks: the job's deliveries and every attempt at each."""
    from api.jobs import find_job  # api.jobs submits through api.submission, which imports this module

    job = find_job(job_id)
    session = db()
    deliveries = list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job.id)
            .order_by(WebhookDelivery.id)
            .limit(MAX_DELIVERIES)
        )
    )
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        ):
            attempts[attempt.delivery_id].append(attempt)
    body = WebhookDeliveryList(
        deliveries=[
            WebhookDeliveryOut(
                id=d.id,
                message_id=d.message_id,
                event=d.event,
                image_id=d.image_id or None,
                url=d.url,
                status=d.status,
                attempts=d.attempts,
                created_at=d.created_at,
                next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                finished_at=d.finished_at,
                last_error=d.last_error,
                payload=d.payload,
                attempt_log=[
                    WebhookAttemptOut(
                        number=a.number,
                        started_at=a.started_at,
                        duration_seconds=a.duration_seconds,
                        address=a.address,
                        status_code=a.status_code,
                        outcome=a.outcome,
                        error=a.error,
                    )
                    for a in attempts[d.id]
                ],
            )
            for d in deliveries
        ]
    )
    return jsonify(body.model_dump(mode="json"))


def _settings_out(secret: str | None = None) -> dict:
    options = read_options(db(), owner_id())
    return WebhookSettingsOut(
        url=options.webhook_url if options else None,
        own_secret=bool(options and options.webhook_secret),
        farm_secret=farm().settings.webhook_secret is not None,
        secret=secret,
    ).model_dump(mode="json")


def get_webhook_settings() -> Response:
    """GET /api/v1/webhook-settings: the caller's default webhook URL and secret status."""
    return jsonify(_settings_out())


def put_webhook_settings() -> Response:
    """PUT /api/v1/webhook-settings: set the default URL (null clears it) and optionally a new secret."""
    body = parse_body(WebhookSettingsIn)
    options = read_options(db(), owner_id())
    if body.url is not None:
        try:
            allowed_address(body.url, farm().settings.webhook_allow_private)
        except RefusedWebhookURL as error:
            raise ApiError(422, "invalid webhook URL", [{"field": "url", "reason": str(error)}]) from None
        signable = body.new_secret or farm().settings.webhook_secret or (options and options.webhook_secret)
        if not signable:
            reason = "no secret to sign with: send new_secret=true (or give the farm SDFARM_WEBHOOK_SECRET)"
            raise ApiError(422, "webhooks are not set up", [{"field": "new_secret", "reason": reason}])
    values: dict = {"webhook_url": body.url}
    secret = new_secret() if body.new_secret else None
    if secret is not None:
        values["webhook_secret"] = secret
    save_options(db(), owner_id(), **values)
    return jsonify(_settings_out(secret))
