"""With auth on, the gallery asks for a key (kept in a cookie) or, if configured, runs read-only."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.auth import KEY_COOKIE, create_key
from api.gallery.sign_in import safe_next

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def secured(app):
    app.extensions["sdfarm"].settings.auth = "on"
    with app.extensions["sdfarm"].sessions() as session:
        return create_key(session, "alice")[1]


def test_pages_redirect_to_sign_in_and_the_cookie_signs_in(client, secured):
    response = client.get("/jobs?x=1")
    assert response.status_code == 303 and "/sign-in?next=/jobs?x%3D1" in response.headers["Location"]
    page = client.get("/sign-in?next=/jobs")
    assert page.status_code == 200 and b'name="key"' in page.data
    wrong = client.post(
        "/sign-in", data={"key": "sdf_nope", "next": "/jobs"}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert wrong.status_code == 401 and b"unknown or revoked" in wrong.data
    signed = client.post("/sign-in", data={"key": secured, "next": "/jobs"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert signed.status_code == 303 and signed.headers["Location"] == "/jobs"
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith(f"{KEY_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/jobs").status_code == 200
    assert client.get("/api/v1/jobs").status_code == 200  # the same key, from the cookie
    assert b"Sign out (alice)" in client.get("/").data


OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",  # issue #12: became Location: //evil.example
    "/\n/x",  # issue #12: gave 500
    "/\r/evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/\u200b/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "https:/evil.example",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_sign_in_never_redirects_off_site(client, secured, target):
    response = client.post("/sign-in", data={"key": secured, "next": target}, headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303 and response.headers["Location"] == "/"


@pytest.mark.parametrize("query", ["/%09/evil.example", "/%0a/x", "/%0d%0a/evil.example", "%2F%2Fevil.example"])
def test_the_sign_in_page_keeps_only_safe_targets(client, secured, query):
    page = client.get(f"/sign-in?next={query}")
    assert page.status_code == 200 and b'name="next" value="/"' in page.data


def test_paths_of_this_site_survive_sign_in(client, secured):
    kept = (("/jobs?x=1#a", "/jobs?x=1#a"), ("/?q=%2F%2Fx", "/?q=%2F%2Fx"), ("/?q=caf\u00e9", "/?q=caf%C3%A9"))
    for target, location in kept:
        response = client.post(
            "/sign-in", data={"key": secured, "next": target}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert response.headers["Location"] == location


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.text(st.sampled_from(list("/\\:.@?#%a \t\n\r\x00\x0b\u3000\uff0f")), max_size=12))
def test_any_next_stays_on_site(app, target):
    with app.test_request_context():
        location = safe_next(target)
    resolved = urlsplit(urljoin("https://farm.example/base/", location))
    assert resolved.scheme == "https" and resolved.netloc == "farm.example", (target, location)
    assert location.isascii() and location.isprintable() and location.startswith("/")


def test_cross_site_posts_are_refused_even_with_the_cookie(client, secured):
    client.post("/sign-in", data={"key": secured}, headers={"Sec-Fetch-Site": "same-origin"})
    job = client.post("/api/v1/jobs", json={"prompts": ["a"]}).json
    forged = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403
    assert client.get(f"/api/v1/jobs/{job['id']}").json["status"] == "queued"


def test_public_gallery_is_read_only(app, client, secured):
    app.extensions["sdfarm"].settings.gallery_public = True
    assert client.get("/").status_code == 200
    assert client.get("/jobs").status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401  # the JSON API still needs a key
    refused = client.post("/jobs", data={"prompts": "a cat"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert refused.status_code == 401
