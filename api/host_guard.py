"""DNS-rebinding guard: with auth off, answer only requests addressed to this machine's loopback names.

With auth off the farm trusts whoever can reach it, which is meant to be the people on this
machine. A web page on another site can still reach it through the visitor's browser by pointing
its own DNS name at 127.0.0.1 once the page is loaded ("DNS rebinding"); the browser then treats
the farm as that site and lets the page read the answers. The browser still sends the page's name
in `Host`, so a farm without keys answers only Hosts that are loopback names or addresses, or
that SDFARM_ALLOWED_HOSTS names.
"""

from __future__ import annotations

import ipaddress

from flask import request

from api.errors import ApiError
from models.settings import Settings


def host_name(host: str) -> str:
    """The name or address of a `Host` header, without its port, brackets or final dot, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].partition("]")[0]
    if host.count(":") == 1:  # name:port (more than one colon is a bare IPv6 address)
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback_host(name: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(name: str, allowed: list[str]) -> bool:
    """Whether a Host name is loopback or matches SDFARM_ALLOWED_HOSTS (`.example.com` covers subdomains)."""
    if is_loopback_host(name):
        return True
    for entry in allowed:
        if entry == "*" or name == entry or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:])):
            return True
    return False


def require_allowed_host(settings: Settings) -> None:
    """before_request: 400 for a Host this farm does not answer to while it needs no key."""
    if settings.auth_required():
        return  # with keys, a rebinding page has no key to send
    raw = request.headers.get("Host", "")
    if not raw:
        return  # HTTP/1.0 without Host: no browser sends that, so no rebinding page can
    name = host_name(raw)
    if host_allowed(name, settings.allowed_host_list()):
        return
    raise ApiError(
        400,
        f"Host {raw!r} is not served: with auth off the farm answers only loopback names (localhost, "
        "127.0.0.1, ::1) and SDFARM_ALLOWED_HOSTS, which keeps other sites' pages out (DNS rebinding)",
        [{"field": "Host", "reason": f"{name!r} is not a loopback name nor in SDFARM_ALLOWED_HOSTS"}],
    )
