"""Signing in to the gallery with an API key (kept in an HttpOnly, SameSite=Strict cookie)."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from flask import Response, redirect, render_template, request, url_for
from werkzeug.urls import iri_to_uri

from api.auth import KEY_COOKIE, find_key
from api.farm import farm

COOKIE_DAYS = 30
MAX_NEXT_CHARS = 2000


def safe_next(target: str | None) -> str:
    """`target` if it is a path of this site, else the gallery: never a redirect off site.

    Browsers drop tabs and newlines anywhere in a URL and read a backslash as a slash, so
    `next=/%09/evil.example` (a tab) would arrive as `//evil.example`, another host. Any control, format or
    unpaired surrogate character, any backslash, a scheme, a host or a leading `//` send the
    visitor to the gallery instead.
    """
    home = url_for("gallery.gallery_page")
    if not target or len(target) > MAX_NEXT_CHARS or "\\" in target:
        return home
    if any(unicodedata.category(ch).startswith("C") for ch in target):
        return home
    if not target.startswith("/") or target.startswith("//"):
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return home
    return iri_to_uri(target)  # non-ASCII as %-escapes, so the Location header stays ASCII


def sign_in_page() -> str:
    """GET /sign-in: the key form."""
    return render_template(
        "sign_in.html", next=safe_next(request.args.get("next")), error=None, public=farm().settings.gallery_public
    )


def sign_in() -> Response | tuple[str, int]:
    """POST /sign-in: check the key, remember it in a cookie, go back where the visitor was."""
    secret = (request.form.get("key") or "").strip()
    target = safe_next(request.form.get("next"))
    if not secret or find_key(secret) is None:
        html = render_template(
            "sign_in.html", next=target, error="unknown or revoked API key", public=farm().settings.gallery_public
        )
        return html, 401
    response = redirect(target, code=303)
    response.set_cookie(
        KEY_COOKIE,
        secret,
        max_age=COOKIE_DAYS * 86400,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        path="/",
    )
    return response


def sign_out() -> Response:
    """POST /sign-out: forget the key."""
    response = redirect(url_for("gallery.gallery_page"), code=303)
    response.delete_cookie(KEY_COOKIE, path="/")
    return response
