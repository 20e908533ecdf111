"""API keys: `Authorization: Bearer <key>`; each key sees only its own jobs unless it is an admin."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.farm import db, farm
from models.api_key import ApiKey

KEY_PREFIX = "sdf_"
# Browsers cannot send an Authorization header from a link, so the gallery's sign-in page
# keeps the key in this cookie (HttpOnly, SameSite=Strict) and it counts as the same key.
KEY_COOKIE = "sdfarm_key"
READ_ONLY_METHODS = {"GET", "HEAD"}


def hash_secret(secret: str) -> str:
    """Keys are stored as SHA-256: they are long random strings, so no slow hash is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, admin: bool = False) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is shown once and never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, prefix=secret[:10], secret_hash=hash_secret(secret), is_admin=admin)
    session.add(key)
    session.commit()
    return key, secret


def authenticate() -> None:
    """before_request: find the caller's key (or none when auth is off); 401 without a valid one."""
    g.api_key = None
    g.read_only_guest = False
    if not farm().settings.auth_required():
        return
    secret = _presented_secret()
    if secret is None:
        if farm().settings.gallery_public and request.method in READ_ONLY_METHODS and _is_gallery_read():
            g.read_only_guest = True
            return
        raise ApiError(
            401,
            "this farm needs an API key: send 'Authorization: Bearer <key>' "
            "(create one with `sdfarm keys create NAME`), or HTTP Basic with the key as the password",
            headers=_challenge(),
        )
    key = find_key(secret)
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=_challenge())
    g.api_key = key


def find_key(secret: str) -> ApiKey | None:
    """The live key whose secret this is, if any."""
    return db().scalar(
        select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret.strip()), ApiKey.revoked.is_(False))
    )


def _presented_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    if scheme.lower() == "basic" and secret.strip():
        # As AUTOMATIC1111's --api-auth: HTTP Basic, the key as the password (the user name is not checked).
        return _basic_password(secret.strip())
    return request.cookies.get(KEY_COOKIE) or None


def _basic_password(encoded: str) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, separator, password = decoded.partition(":")
    return password.strip() or None if separator else None


def _challenge() -> dict[str, str]:
    """WWW-Authenticate: Basic for the A1111 API (its clients send a user and password), Bearer elsewhere."""
    if request.path.startswith("/sdapi/"):
        return {"WWW-Authenticate": 'Basic realm="sdfarm", charset="UTF-8"'}
    return {"WWW-Authenticate": 'Bearer realm="sdfarm"'}


def _is_gallery_read() -> bool:
    """Gallery pages, thumbnails and image files: what a read-only visitor may see."""
    return request.blueprint == "gallery" or request.endpoint in {"images.image_file", "images.image_thumbnail"}


def owner_scope() -> int | None:
    """The key id whose rows the caller may see; None means all rows (admin, or auth off)."""
    key: ApiKey | None = g.get("api_key")
    if key is None or key.is_admin:
        return None
    return key.id


def owner_id() -> int | None:
    """The key id to record as a new job's owner."""
    key: ApiKey | None = g.get("api_key")
    return key.id if key is not None else None
