"""Sending webhook deliveries from the outbox: signed, retried with backoff, every attempt recorded.

Runs beside the workers (in the supervisor), never inside an API request. `run_once()` claims due
deliveries with a conditional UPDATE (so several supervisors never send one delivery at once),
checks the URL's addresses again, connects to the checked address itself, and records the attempt.
Delivery is at least once: a receiver deduplicates on the `webhook-id` header.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta

import certifi
import urllib3
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from models.base import utcnow
from models.key_options import read_options
from models.settings import Settings
from models.webhook import DeliveryStatus, WebhookAttempt, WebhookDelivery
from models.webhook_address import RefusedWebhookURL, allowed_address

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120.0
MAX_DELAY_SECONDS = 8 * 3600.0
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "sdfarm-webhooks/1"


def retry_delay(attempt: int, base_seconds: float) -> float:
    """Seconds before attempt `attempt + 1`: base x 3^(attempt-1), capped at 8 h, with 10% jitter."""
    delay = min(base_seconds * 3 ** max(attempt - 1, 0), MAX_DELAY_SECONDS)
    return delay * random.uniform(0.9, 1.1)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`."""
    signature = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


class DeliveryOutcome:
    """What one attempt came to."""

    def __init__(self, outcome: str, status_code: int | None = None, error: str | None = None, address=None):
        self.outcome = outcome
        self.status_code = status_code
        self.error = error
        self.address = str(address) if address is not None else None

    @property
    def delivered(self) -> bool:
        """A 2xx came back."""
        return self.outcome == "delivered"


def post_pinned(url: str, body: bytes, headers: dict[str, str], allow_private: bool, timeout: float) -> DeliveryOutcome:
    """POST `body` to `url`, connecting only to an address the guard allowed; redirects are not followed."""
    try:
        scheme, host, port, address = allowed_address(url, allow_private)
    except RefusedWebhookURL as error:
        resolved = "does not resolve" in str(error) or "has no address" in str(error)
        return DeliveryOutcome("network_error" if resolved else "refused", error=str(error))
    parts = urllib3.util.parse_url(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    options = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False, "maxsize": 1}
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            str(address),
            port,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(str(address), port, **options)
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        response.read(MAX_RESPONSE_BYTES)
        response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        return DeliveryOutcome("network_error", error=f"{type(error).__name__}: {error}"[:500], address=address)
    finally:
        pool.close()
    if 200 <= response.status < 300:
        return DeliveryOutcome("delivered", response.status, address=address)
    note = " (redirects are not followed)" if 300 <= response.status < 400 else ""
    return DeliveryOutcome("http_error", response.status, f"HTTP {response.status}{note}", address=address)


class WebhookDispatcher:
    """Sends due deliveries; one `run_once()` per tick of the supervisor's background loop."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, batch: int = 20):
        self.sessions = sessions
        self.settings = settings
        self.batch = batch

    def run_once(self) -> int:
        """Claim and send the due deliveries; returns how many attempts were made."""
        claimed = self._claim()
        for delivery in claimed:
            try:
                self._deliver(delivery)
            except Exception:
                # The claim expires and another pass retries; the loop must not die with one bad row.
                log.exception("webhook delivery %s (job %s) could not be attempted", delivery.id, delivery.job_id)
        return len(claimed)

    def _claim(self) -> list[WebhookDelivery]:
        now = utcnow()
        free = or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now)
        due = (WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now, free)
        claimed = []
        with self.sessions() as session:
            ids = list(
                session.scalars(
                    select(WebhookDelivery.id).where(*due).order_by(WebhookDelivery.next_attempt_at).limit(self.batch)
                )
            )
            for delivery_id in ids:
                taken = session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery_id, *due)
                    .values(lease_expires_at=now + timedelta(seconds=CLAIM_SECONDS))
                ).rowcount
                session.commit()
                if taken == 1:
                    claimed.append(session.get(WebhookDelivery, delivery_id))
            session.expunge_all()
        return claimed

    def _secret(self, owner_key_id: int | None) -> str | None:
        with self.sessions() as session:
            options = read_options(session, owner_key_id)
        return (options.webhook_secret if options is not None else None) or self.settings.webhook_secret

    def _deliver(self, delivery: WebhookDelivery) -> None:
        secret = self._secret(delivery.owner_key_id)
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
        started = utcnow()
        clock = time.monotonic()
        if secret is None:
            outcome = DeliveryOutcome("refused", error="no webhook secret: set SDFARM_WEBHOOK_SECRET or a key secret")
        else:
            headers = sign(secret, delivery.message_id, int(time.time()), body)
            headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
            outcome = post_pinned(
                delivery.url,
                body.encode(),
                headers,
                self.settings.webhook_allow_private,
                self.settings.webhook_timeout_seconds,
            )
        number = delivery.attempts + 1
        final = outcome.delivered or outcome.outcome == "refused" or number >= self.settings.webhook_max_attempts
        if outcome.delivered:
            status = DeliveryStatus.DELIVERED
        else:
            status = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
        now = utcnow()
        next_attempt = now + timedelta(seconds=retry_delay(number, self.settings.webhook_retry_base_seconds))
        with self.sessions() as session:
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    number=number,
                    started_at=started,
                    duration_seconds=round(time.monotonic() - clock, 4),
                    address=outcome.address,
                    status_code=outcome.status_code,
                    outcome=outcome.outcome,
                    error=outcome.error,
                )
            )
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id)
                .values(
                    attempts=number,
                    status=status,
                    lease_expires_at=None,
                    next_attempt_at=next_attempt if not final else now,
                    finished_at=now if final else None,
                    last_error=outcome.error,
                )
            )
            session.commit()
        log.info(
            "webhook %s %s for job %s: attempt %d %s%s",
            delivery.message_id,
            delivery.event,
            delivery.job_id,
            number,
            outcome.outcome,
            f" ({outcome.error})" if outcome.error else "",
            extra={"job_id": delivery.job_id},
        )
