"""A fake resolver for tests: ``WEBHOOK_RESOLVER=webhooks.testing.dns.resolve_from_env``.

``WEBHOOK_FAKE_DNS="hooks.example.test=127.0.0.1,evil.example=10.0.0.1"`` maps
hostnames to addresses (several addresses: ``host=a|b``). Unknown names do not
resolve. Lets a test — and a Celery worker subprocess — make a hostname resolve to a
private address without touching DNS or /etc/hosts.
"""

from __future__ import annotations

import ipaddress
import os


def _table() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for item in os.environ.get("WEBHOOK_FAKE_DNS", "").split(","):
        host, sep, addresses = item.strip().partition("=")
        if sep:
            table[host.strip().lower()] = [a.strip() for a in addresses.split("|") if a.strip()]
    return table


def resolve_from_env(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    addresses = _table().get(host.lower())
    if not addresses:
        raise OSError(f"fake DNS: {host} does not resolve")
    return addresses
