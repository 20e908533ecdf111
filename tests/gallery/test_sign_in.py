"""With auth on, the gallery asks for a key (kept in a cookie) or, if configured, runs read-only."""

from __future__ import annotations

import pytest

from api.auth import KEY_COOKIE, create_key

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


def test_sign_in_never_redirects_off_site(client, secured):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.post(
            "/sign-in", data={"key": secured, "next": target}, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert response.headers["Location"] == "/"


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
