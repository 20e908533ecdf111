"""Rate limits (flask-limiter on a real Redis): per key over every route, per address for 401s."""

from __future__ import annotations

import base64
import time

import pytest
import redis

from api import create_app
from api.auth import create_key

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def keys(app):
    app.extensions["sdfarm"].settings.auth = "on"
    with app.extensions["sdfarm"].sessions() as session:
        alice = create_key(session, "alice")[1]
        bob = create_key(session, "bob")[1]
    return {"alice": alice, "bob": bob}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{secret}".encode()).decode()}


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_per_key_limit_has_standard_headers_and_covers_the_a1111_api(app, client, keys):
    app.extensions["sdfarm"].settings.rate_limit_per_minute = 4
    first = client.get("/api/v1/jobs", headers=bearer(keys["alice"]))
    assert first.status_code == 200
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("4", "3")
    assert time.time() - 1 <= int(first.headers["X-RateLimit-Reset"]) <= time.time() + 61  # when the window ends
    # The A1111 routes (HTTP Basic, as its clients send) and the gallery draw on the same budget.
    assert client.get("/sdapi/v1/sd-models", headers=basic(keys["alice"])).status_code == 200
    assert client.get("/", headers=bearer(keys["alice"])).status_code == 200
    last = client.get("/sdapi/v1/options", headers=basic(keys["alice"]))
    assert last.status_code == 200 and last.headers["X-RateLimit-Remaining"] == "0"
    limited = client.get("/sdapi/v1/progress", headers=basic(keys["alice"]))
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "SDFARM_RATE_LIMIT_PER_MINUTE" in limited.json["error"]["message"]
    assert client.post("/api/v1/jobs", json={"prompts": ["a"]}, headers=bearer(keys["alice"])).status_code == 429
    assert client.get("/api/v1/jobs", headers=bearer(keys["bob"])).status_code == 200  # per key
    assert client.get("/healthz").status_code == 200  # public routes are not counted against anyone


def test_api_processes_share_the_counts_in_redis(app, client, keys, settings, redis_server):
    """Two apps (as two gunicorn workers would be) on one Redis count one budget."""
    settings.auth, settings.rate_limit_per_minute = "on", 4
    other = create_app(settings).test_client()
    codes = [
        (client if turn % 2 else other).get("/api/v1/jobs", headers=bearer(keys["alice"])).status_code
        for turn in range(6)
    ]
    assert codes == [200, 200, 200, 200, 429, 429]
    stored = redis.Redis.from_url(redis_server.url).keys("*sdfarm:limits*")
    assert stored, "the counts are kept in Redis"


def test_401s_are_limited_per_client_address(app, client, keys):
    app.extensions["sdfarm"].settings.auth_failures_per_minute = 3
    attacker, neighbour = from_address("203.0.113.7"), from_address("198.51.100.2")
    guesses = [
        client.get("/api/v1/jobs", headers=bearer("sdf_guess"), **attacker).status_code,
        client.get("/api/v1/images", **attacker).status_code,
        client.get("/sdapi/v1/sd-models", headers=basic("sdf_guess"), **attacker).status_code,
    ]
    assert guesses == [401, 401, 401]
    refused = client.get("/api/v1/jobs", headers=bearer("sdf_guess"), **attacker)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert "SDFARM_AUTH_FAILURES_PER_MINUTE" in refused.json["error"]["message"]
    assert client.get("/no-such-url", **attacker).status_code == 429  # unrouted URLs too
    assert client.get("/api/v1/jobs", headers=bearer("sdf_guess"), **neighbour).status_code == 401
    # A valid key still works from the address, and public routes stay open.
    assert client.get("/api/v1/jobs", headers=bearer(keys["alice"]), **attacker).status_code == 200
    assert client.get("/healthz", **attacker).status_code == 200


def test_failed_gallery_sign_ins_are_limited_per_client_address(app, client, keys):
    app.extensions["sdfarm"].settings.auth_failures_per_minute = 2
    attacker = from_address("203.0.113.9")
    form = {"key": "sdf_guess", "next": "/"}
    assert [client.post("/sign-in", data=form, **attacker).status_code for _ in range(2)] == [401, 401]
    blocked = client.post("/sign-in", data={"key": keys["alice"], "next": "/"}, **attacker)
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    assert client.get("/sign-in", **attacker).status_code == 200  # the form itself is still shown
    assert client.post("/sign-in", data={"key": keys["alice"], "next": "/"}).status_code == 303  # another address


def test_auth_off_counts_nothing_but_wrong_metrics_tokens(app, client):
    for _ in range(3):
        response = client.get("/api/v1/jobs")
        assert response.status_code == 200 and "X-RateLimit-Limit" not in response.headers
    settings = app.extensions["sdfarm"].settings
    settings.metrics_token, settings.auth_failures_per_minute = "s3cret", 2
    wrong = {"headers": {"Authorization": "Bearer guess"}, **from_address("203.0.113.5")}
    assert [client.get("/metrics", **wrong).status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/api/v1/jobs", **from_address("203.0.113.5")).status_code == 200


def test_without_redis_each_process_counts_in_memory(settings, keys):
    settings.redis_url = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.auth, settings.rate_limit_per_minute = "on", 2
    client = create_app(settings).test_client()
    codes = [client.get("/api/v1/jobs", headers=bearer(keys["alice"])).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
