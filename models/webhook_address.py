"""Which webhook URLs the farm may call: never its own machine, a private network or a cloud metadata service.

Checked when a job is submitted (a clear 422) and again just before each delivery, on the addresses
the name resolves to then; the connection is then made to the checked address itself, so a DNS
answer that changes between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000
# Cloud metadata endpoints: refused even where private targets are allowed.
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedWebhookURL(ValueError):
    """A webhook URL the farm will not call, and why."""


def check_url_form(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL without credentials; RefusedWebhookURL otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise RefusedWebhookURL(f"longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedWebhookURL(f"not a valid URL ({error})") from None
    if parts.scheme not in {"http", "https"}:
        raise RefusedWebhookURL("must be an http:// or https:// URL")
    if not parts.hostname:
        raise RefusedWebhookURL("has no host")
    if parts.username or parts.password:
        raise RefusedWebhookURL("must not carry a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why the farm must not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a host address"
    if allow_private or address.is_global:
        return None
    kind = (
        "loopback"
        if address.is_loopback
        else "link-local"
        if address.is_link_local
        else "private"
        if address.is_private
        else "not a public"
    )
    return f"{address} is a {kind} address (set SDFARM_WEBHOOK_ALLOW_PRIVATE=true on a closed network)"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise RefusedWebhookURL(f"host {host!r} does not resolve ({error})") from None
    addresses: list[IPAddress] = []
    for *_ignored, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def allowed_address(url: str, allow_private: bool) -> tuple[str, str, int, IPAddress]:
    """(scheme, host, port, address to connect to); refused if ANY resolved address is forbidden.

    All of them are checked, not only the first, so a name with one public and one private
    address cannot be used to reach the private one on a later resolution.
    """
    scheme, host, port = check_url_form(url)
    addresses = resolve(host, port)
    if not addresses:
        raise RefusedWebhookURL(f"host {host!r} has no address")
    for address in addresses:
        reason = refusal(address, allow_private)
        if reason is not None:
            raise RefusedWebhookURL(f"{host} resolves to {reason}" if str(address) != host.strip("[]") else reason)
    return scheme, host, port, addresses[0]
