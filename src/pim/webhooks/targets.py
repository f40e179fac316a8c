"""Where a webhook may point: http(s) URLs whose host resolves only to public addresses.

Checked when a webhook is registered and again before every delivery (DNS may change); the
delivery then connects to the address that was checked, so a second lookup cannot swap in an
internal one. ``PIM_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address check (local development)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")


class UnsafeTarget(ValueError):
    """The URL is not one the service will POST to; the message says why."""


def _split(url: str) -> tuple[SplitResult, str, int]:
    if not url.strip():
        raise UnsafeTarget("must be an absolute http or https URL")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise UnsafeTarget("must use the http or https scheme")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("must name a host")
    default_port = 443 if parts.scheme.lower() == "https" else 80
    return parts, host, port if port is not None else default_port


def shown(url: str) -> str:
    """The URL as the API shows it: a password in it (sent as Basic auth on delivery) is
    masked, like the secret it is."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def refusal(ip: IPAddress) -> str | None:
    """Why this address may not receive webhooks (None when it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return refusal(ip.ipv4_mapped)
    checks = (
        ("an unspecified address", ip.is_unspecified),
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
        ("an address that is not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"host '{host}' does not resolve: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:  # pragma: no cover - getaddrinfo returns numeric addresses
            continue
        if ip not in found:
            found.append(ip)
    if not found:
        raise UnsafeTarget(f"host '{host}' does not resolve to any address")
    return found


def resolve_target(url: str, *, allow_private: bool) -> list[str]:
    """The vetted addresses of ``url``'s host, to connect to (none when ``allow_private``:
    then the HTTP client resolves the name itself). Raises UnsafeTarget when refused."""
    _, host, port = _split(url)
    if allow_private:
        return []
    addresses = _addresses(host, port)
    for ip in addresses:
        why = refusal(ip)
        if why is not None:
            raise UnsafeTarget(
                f"host '{host}' resolves to {ip}, {why}; webhooks may only target "
                "public addresses (set PIM_WEBHOOK_ALLOW_PRIVATE=true to allow others)"
            )
    return [str(ip) for ip in addresses]


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeTarget (a ValueError) unless ``url`` is an http(s) URL with a host that
    resolves only to public addresses (any address when ``allow_private``)."""
    resolve_target(url, allow_private=allow_private)
