"""Standard Webhooks secrets: `whsec_` followed by base64 of 24 to 64 random bytes."""

from __future__ import annotations

import base64
import binascii
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh secret of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(value: str, name: str = "secret") -> str:
    """The secret if it has the specification's form; ValueError naming `name` otherwise."""
    if not value.startswith(PREFIX):
        raise ValueError(f"{name} must start with {PREFIX!r} (make one with `sdfarm webhooks secret`)")
    try:
        raw = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be {PREFIX} followed by base64") from None
    if not 24 <= len(raw) <= 64:
        raise ValueError(f"{name} must hold 24 to 64 bytes; it holds {len(raw)}")
    return value
