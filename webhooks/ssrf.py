"""SSRF guard for integrator-supplied webhook URLs.

The URL is parsed strictly, the host is resolved exactly once, and every resolved
address must be public. The caller then connects to the returned ``pinned_ip`` (see
``webhooks.sender``) so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot redirect the request to an internal address.

Hosts listed in ``allow_http_hosts`` (the ``WEBHOOK_ALLOW_HTTP_HOSTS`` setting, for
local development and tests) may use plain http and skip the private-address check;
they are still resolved once and pinned.

Pure module: no Django. The resolver is injectable so tests can make any hostname
resolve to any address without touching DNS or /etc/hosts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, urlsplit

from billing_kit.errors import ErrorCode

MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], Sequence[str]]

_IPV4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link_local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_IPV6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "ipv4_mapped"),
        ("::ffff:0:0:0/96", "ipv4_translated"),
        ("::/96", "ipv4_compatible"),
        ("64:ff9b::/96", "nat64"),
        ("64:ff9b:1::/48", "nat64"),
        ("100::/64", "reserved"),
        ("2001::/32", "teredo"),
        ("2001:db8::/32", "reserved"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "unique_local"),
        ("fe80::/10", "link_local"),
        ("fec0::/10", "site_local"),
        ("ff00::/8", "multicast"),
    )
)


class UnsafeReason(StrEnum):
    """Why a URL is refused: ``UnsafeWebhookUrl.code``, also the start of a refused attempt's error."""

    # A malformed URL is what Lago's own code says.
    URL_IS_INVALID = ErrorCode.URL_IS_INVALID.value
    SCHEME_NOT_ALLOWED = "scheme_not_allowed"
    UNRESOLVABLE_HOST = "unresolvable_host"
    PRIVATE_ADDRESS = "private_address"
    PORT_NOT_ALLOWED = "port_not_allowed"


class UnsafeWebhookUrl(ValueError):
    """The URL may not be used as a webhook destination.

    ``code`` is a stable machine-readable reason (e.g. ``scheme_not_allowed``,
    ``private_address``); the message is safe to show to the integrator.
    """

    def __init__(self, code: UnsafeReason, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    host: str  # lower-case, IDNA-encoded, no brackets
    port: int
    target: str  # path + query, percent-encoded ASCII: what goes on the request line
    url: str  # the normalised URL: IDNA host, no default port, percent-encoded, no fragment


@dataclass(frozen=True)
class CheckedTarget:
    parsed: ParsedUrl
    pinned_ip: str
    private_allowed: bool


def blocked_reason(ip: str) -> str | None:
    """Why this address must never be a webhook destination, or None if it is public."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return "invalid_address"
    if isinstance(addr, ipaddress.IPv4Address):
        for net4, reason in _IPV4_BLOCKED:
            if addr in net4:
                return reason
    else:
        for net6, reason in _IPV6_BLOCKED:
            if addr in net6:
                return reason
    if addr.is_multicast:
        return "multicast"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_private:
        return "private"
    if addr.is_reserved or not addr.is_global:
        return "reserved"
    return None


def normalise_allow_list(hosts: Iterable[str] | str | None) -> frozenset[str]:
    if hosts is None:
        return frozenset()
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return frozenset(h.strip().lower().strip("[]") for h in hosts if h and h.strip())


# Characters that stay as they are in a path or query (RFC 3986 unreserved, sub-delims,
# ":", "@", "/", "?"), and "%" when it starts a valid escape; everything else (non-ASCII
# as UTF-8) is percent-encoded.
_NEEDS_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")


def _percent_encode(part: str) -> str:
    return _NEEDS_ESCAPE.sub(lambda m: quote(m.group(), safe=""), part)


def normalise_allowed_ports(entries: Iterable[str] | str | None) -> frozenset[tuple[str, int]]:
    """``host:port`` entries (``WEBHOOK_ALLOWED_PORTS``) as (IDNA host, port) pairs.

    An IPv6 host is written in brackets: ``[2001:db8::1]:8443``. Malformed entries
    raise ValueError (a configuration error, found at the first use).
    """
    if entries is None:
        return frozenset()
    if isinstance(entries, str):
        entries = entries.split(",")
    pairs = set()
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"WEBHOOK_ALLOWED_PORTS entry {entry!r} is not host:port")
        host = host.strip("[]").lower()
        if not _is_ip_literal(host):
            host = host.encode("idna").decode("ascii").lower().rstrip(".")
        pairs.add((host, int(port)))
    return frozenset(pairs)


def parse_url(url: str, *, allow_http_hosts: Iterable[str] | str | None = None) -> ParsedUrl:
    allow = normalise_allow_list(allow_http_hosts)
    if not isinstance(url, str) or not url:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL is too long")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL is malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeWebhookUrl(UnsafeReason.SCHEME_NOT_ALLOWED, "only https URLs are accepted")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "credentials in the URL are not accepted")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL has no host")
    try:
        host = raw_host.encode("idna").decode("ascii").lower() if not _is_ip_literal(raw_host) else raw_host
    except UnicodeError as exc:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "host name is not valid") from exc
    host = host.rstrip(".") if not _is_ip_literal(host) else host
    if scheme == "http" and host not in allow:
        raise UnsafeWebhookUrl(UnsafeReason.SCHEME_NOT_ALLOWED, "only https URLs are accepted")
    if port == 0:
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "port 0 is not valid")
    default_port = 443 if scheme == "https" else 80
    if port is None:
        port = default_port
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        target = _percent_encode(target)
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL is not valid text") from exc
    netloc = f"[{host}]" if ":" in host else host
    if port != default_port:
        netloc += f":{port}"
    normalised = f"{scheme}://{netloc}{target}"
    if len(normalised) > MAX_URL_LENGTH:  # percent-encoding can triple the length
        raise UnsafeWebhookUrl(UnsafeReason.URL_IS_INVALID, "URL is too long once percent-encoded")
    return ParsedUrl(scheme=scheme, host=host, port=port, target=target, url=normalised)



def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # IPv4/IPv6 answers: the address is a string (the stub's union also covers
        # socket families whose address is a number).
        ip = str(sockaddr[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def check_url(
    url: str,
    *,
    allow_http_hosts: Iterable[str] | str | None = None,
    resolver: Resolver | None = None,
    allowed_ports: Iterable[str] | str | None = None,
) -> CheckedTarget:
    """Parse, resolve once and vet ``url``; return the address to connect to.

    Every resolved address must be public (an attacker-controlled zone could mix a
    public and a private answer); the first one is pinned. An https port other than
    443 needs its ``host:port`` in ``allowed_ports`` (hosts of ``allow_http_hosts``,
    local development, may use any port).
    """
    allow = normalise_allow_list(allow_http_hosts)
    parsed = parse_url(url, allow_http_hosts=allow)
    private_allowed = parsed.host in allow
    resolve = resolver or system_resolver
    try:
        addresses = list(resolve(parsed.host, parsed.port))
    except (OSError, UnicodeError) as exc:
        raise UnsafeWebhookUrl(UnsafeReason.UNRESOLVABLE_HOST,
                               f"host {parsed.host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeWebhookUrl(UnsafeReason.UNRESOLVABLE_HOST, f"host {parsed.host!r} does not resolve")
    if not private_allowed:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason is not None:
                raise UnsafeWebhookUrl(
                    UnsafeReason.PRIVATE_ADDRESS,
                    f"host {parsed.host!r} resolves to a non-public address ({reason})",
                )
    if (not private_allowed and parsed.port != 443
            and (parsed.host, parsed.port) not in normalise_allowed_ports(allowed_ports)):
        raise UnsafeWebhookUrl(
            UnsafeReason.PORT_NOT_ALLOWED,
            f"port {parsed.port} is not allowed for {parsed.host!r} (only 443 unless listed in WEBHOOK_ALLOWED_PORTS)",
        )
    return CheckedTarget(parsed=parsed, pinned_ip=addresses[0], private_allowed=private_allowed)
