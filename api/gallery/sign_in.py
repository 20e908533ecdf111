"""Signing in to the gallery with an API key (kept in an HttpOnly, SameSite=Strict cookie)."""

from __future__ import annotations

from flask import Response, redirect, render_template, request, url_for

from api.auth import KEY_COOKIE, find_key
from api.farm import farm

COOKIE_DAYS = 30


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an absolute or scheme-relative URL (open redirect).
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("gallery.gallery_page")
    return target


def sign_in_page() -> str:
    """GET /sign-in: the key form."""
    return render_template(
        "sign_in.html", next=_safe_next(request.args.get("next")), error=None, public=farm().settings.gallery_public
    )


def sign_in() -> Response | tuple[str, int]:
    """POST /sign-in: check the key, remember it in a cookie, go back where the visitor was."""
    secret = (request.form.get("key") or "").strip()
    target = _safe_next(request.form.get("next"))
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
