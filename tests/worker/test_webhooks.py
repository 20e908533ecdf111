"""Webhook delivery: a real receiver process verifying signatures, retries, redirects, and the SSRF guard."""

from __future__ import annotations

import ipaddress
import time

import pytest
from sqlalchemy import select

from models.db import make_engine, make_session_factory
from models.webhook import WebhookAttempt, WebhookDelivery, record_job_events
from models.webhook_address import RefusedWebhookURL, allowed_address, refusal
from models.webhook_secret import new_secret
from tests.factories import add_job
from tests.receivers import Receiver
from worker.webhooks import WebhookDispatcher, retry_delay

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.10.10",
    "100.64.0.1",
    "0.0.0.0",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "fd00:ec2::254",
    "224.0.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_loopback_private_link_local_and_metadata_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None


def test_public_addresses_are_allowed_and_private_ones_only_when_allowed():
    for address in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"):
        assert refusal(ipaddress.ip_address(address), allow_private=False) is None
    for address in ("127.0.0.1", "10.1.2.3", "::1", "fc00::1"):
        assert refusal(ipaddress.ip_address(address), allow_private=True) is None
    # Metadata services stay out of reach on a closed network too.
    for address in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert "metadata" in refusal(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://[fc00::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://localhost:8080/hook",  # a DNS name that resolves to loopback
        "ftp://example.com/hook",
        "http://user:pass@example.com/hook",
        "http:///no-host",
        "http://example.com:99999/",
        "http://" + "a" * 2100 + ".com/",
    ],
)
def test_urls_refused(url):
    with pytest.raises(RefusedWebhookURL):
        allowed_address(url, allow_private=False)


def test_backoff_grows_to_hours():
    delays = [retry_delay(n, 5.0) for n in range(1, 10)]
    assert delays[0] < 6 and all(b > a for a, b in zip(delays, delays[1:], strict=False))
    assert sum(delays) > 6 * 3600 and max(delays) <= 8 * 3600 * 1.1


@pytest.fixture
def outbox(settings):
    """Sessions on the test database, and a function that finishes a job with a webhook."""
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)

    def finished_job(url: str, status: str = "succeeded") -> int:
        with sessions() as session:
            job = add_job(session, 2, status=status)
            job.webhook_url = url
            session.commit()
            assert record_job_events(session, [job.id]) == 1
            assert record_job_events(session, [job.id]) == 1  # a second writer is ignored by the unique key
            session.commit()
            return job.id

    yield sessions, finished_job
    engine.dispose()


def _dispatch_until(dispatcher, sessions, job_id: int, status: str, timeout: float = 60.0) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.run_once()
        with sessions() as session:
            delivery = session.scalar(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
            if delivery.status == status:
                return delivery
        time.sleep(0.05)
    raise TimeoutError(f"delivery of job {job_id} is {delivery.status}, expected {status}")


def test_receiver_verifies_the_signature_and_the_attempt_is_in_the_api(tmp_path, settings, outbox, app, client):
    sessions, finished_job = outbox
    secret = new_secret()
    receiver = Receiver(secret, tmp_path / "hooks.jsonl")
    try:
        job_id = finished_job(receiver.url)
        farm_settings = settings.model_copy(update={"webhook_secret": secret, "webhook_allow_private": True})
        _dispatch_until(WebhookDispatcher(sessions, farm_settings), sessions, job_id, "delivered")
        [request] = receiver.requests()
    finally:
        receiver.stop()
    assert request["verified"], request["reason"]
    assert request["path"] == "/hooks/sdfarm?source=test" and request["host"] == f"127.0.0.1:{receiver.port}"
    assert request["body"]["type"] == "job.succeeded" and request["body"]["data"]["job_id"] == job_id
    assert request["body"]["data"]["succeeded"] == 2
    assert request["headers"]["webhook-id"].startswith("msg_")
    assert request["headers"]["webhook-signature"].startswith("v1,")
    log = client.get(f"/api/v1/jobs/{job_id}/webhooks").json["deliveries"]
    assert [d["status"] for d in log] == ["delivered"]
    assert log[0]["message_id"] == request["headers"]["webhook-id"]
    assert [(a["outcome"], a["status_code"], a["address"]) for a in log[0]["attempt_log"]] == [
        ("delivered", 204, "127.0.0.1")
    ]


def test_a_receiver_that_fails_twice_gets_the_same_message_three_times(tmp_path, settings, outbox):
    sessions, finished_job = outbox
    secret = new_secret()
    receiver = Receiver(secret, tmp_path / "hooks.jsonl", fails=2)
    try:
        job_id = finished_job(receiver.url, status="failed")
        farm_settings = settings.model_copy(
            update={"webhook_secret": secret, "webhook_allow_private": True, "webhook_retry_base_seconds": 0.2}
        )
        delivery = _dispatch_until(WebhookDispatcher(sessions, farm_settings), sessions, job_id, "delivered")
        seen = receiver.requests()
    finally:
        receiver.stop()
    assert [r["status"] for r in seen] == [500, 500, 204] and all(r["verified"] for r in seen)
    assert len({r["headers"]["webhook-id"] for r in seen}) == 1  # one id: the receiver can deduplicate
    assert seen[0]["body"]["type"] == "job.failed"
    assert delivery.attempts == 3
    with sessions() as session:
        attempts = list(session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.number)))
    outcomes = [(a.outcome, a.status_code) for a in attempts]
    assert outcomes == [("http_error", 500), ("http_error", 500), ("delivered", 204)]
    # Backoff: the second retry waited longer than the first.
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.5


def test_redirects_are_not_followed(tmp_path, settings, outbox):
    sessions, finished_job = outbox
    secret = new_secret()
    receiver = Receiver(secret, tmp_path / "hooks.jsonl", fails=-1)
    try:
        job_id = finished_job(receiver.url)
        farm_settings = settings.model_copy(
            update={"webhook_secret": secret, "webhook_allow_private": True, "webhook_max_attempts": 1}
        )
        delivery = _dispatch_until(WebhookDispatcher(sessions, farm_settings), sessions, job_id, "failed")
        assert len(receiver.requests()) == 1
    finally:
        receiver.stop()
    assert "HTTP 302" in delivery.last_error and "not followed" in delivery.last_error


def test_a_private_target_is_refused_again_at_delivery_without_connecting(tmp_path, settings, outbox):
    """The URL was allowed when the job was stored (say the DNS answer changed since): no request is sent."""
    sessions, finished_job = outbox
    secret = new_secret()
    receiver = Receiver(secret, tmp_path / "hooks.jsonl")
    try:
        job_id = finished_job(receiver.url)
        farm_settings = settings.model_copy(update={"webhook_secret": secret, "webhook_allow_private": False})
        delivery = _dispatch_until(WebhookDispatcher(sessions, farm_settings), sessions, job_id, "failed")
        time.sleep(0.3)
        assert receiver.requests() == []
    finally:
        receiver.stop()
    assert delivery.attempts == 1 and "loopback" in delivery.last_error


def test_submit_refuses_private_webhook_urls_and_unsigned_setups(client, app):
    farm = app.extensions["sdfarm"]
    farm.settings = farm.settings.model_copy(update={"webhook_secret": new_secret()})
    for url in ("http://127.0.0.1:8000/x", "http://localhost/x", "http://169.254.169.254/", "http://[::1]/"):
        response = client.post("/api/v1/jobs", json={"prompts": ["p"], "webhook_url": url})
        assert response.status_code == 422, url
        assert response.json["error"]["fields"][0]["field"] == "webhook_url"
    farm.settings = farm.settings.model_copy(update={"webhook_secret": None, "webhook_allow_private": True})
    response = client.post("/api/v1/jobs", json={"prompts": ["p"], "webhook_url": "http://127.0.0.1:9/x"})
    assert response.status_code == 422 and "no secret" in response.json["error"]["fields"][0]["reason"]
    made = client.put("/api/v1/webhook-settings", json={"url": "http://127.0.0.1:9/x", "new_secret": True}).json
    assert made["secret"].startswith("whsec_") and made["own_secret"] and made["url"] == "http://127.0.0.1:9/x"
    assert client.get("/api/v1/webhook-settings").json["secret"] is None  # shown once
    accepted = client.post("/api/v1/jobs", json={"prompts": ["p"], "webhook_url": "http://127.0.0.1:9/x"})
    assert accepted.status_code == 202
