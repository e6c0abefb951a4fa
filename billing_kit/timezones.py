"""IANA timezone names: Lago's customer ``timezone`` and the billing calendar of windows."""
from __future__ import annotations

import functools
import zoneinfo
from datetime import timezone, tzinfo

UTC = timezone.utc


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The ``tzinfo`` of an IANA name ("" and "UTC": UTC); ``ZoneInfoNotFoundError`` (a
    ``KeyError``) or ``ValueError`` when unknown."""
    return UTC if name in ("", "UTC") else zoneinfo.ZoneInfo(name)


def is_timezone_name(name: str) -> bool:
    """Whether ``name`` is an IANA timezone this machine knows (``UTC`` included).

    Lago accepts the names of its ``Timezones::MAPPING`` (Rails' list) and ``UTC``; every
    such name is an IANA name, so this accepts at least what Lago does (docs/api.md).
    """
    if not name or len(name) > 64 or name != name.strip() or "\x00" in name:
        return False
    try:
        zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
