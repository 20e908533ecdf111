"""Connection URLs as they may be shown: the password replaced, everything else (TLS options too) kept."""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def mask_url(url: str | None) -> str:
    """The URL with any password (and a secret in the query) masked, for logs and messages."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: show nothing rather than a secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _password = userinfo.partition(":")
        # redis://:password@host has a password but no user.
        netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{userinfo}@{hostport}"
    query = "&".join(_mask_query_item(item) for item in parts.query.split("&")) if parts.query else ""
    # Replace the parts in place: rebuilding the URL would normalise it (sqlite:////abs -> sqlite://abs).
    masked = url.replace(parts.netloc, netloc, 1) if netloc != parts.netloc else url
    return masked.replace(parts.query, query, 1) if query != parts.query else masked


def _mask_query_item(item: str) -> str:
    name, equals, _value = item.partition("=")
    return f"{name}={MASK}" if equals and name.lower() in {"password", "sslpassword"} else item
