"""API-key authentication with a short in-process cache, for the ingestion hot path.

``billing_project.api.authentication.ApiKeyAuthentication`` costs a database round
trip per request; at thousands of events per second that is the largest single cost.
Successful lookups are remembered for ``API_KEY_CACHE_SECONDS`` (default 5 s) per
process, keyed by the SHA-256 of the presented header (the secret itself is never
kept). A revoked or expired key therefore stops working within that many seconds;
failures are never cached.
"""
from __future__ import annotations

import hashlib
import time
from threading import Lock

from django.conf import settings

from billing_project.api.authentication import ApiKeyAuthentication, ServicePrincipal

_MAX_ENTRIES = 1024
_cache: dict[str, tuple[float, ServicePrincipal, object]] = {}  # ok-float (monotonic deadline)
_lock = Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


class CachedApiKeyAuthentication(ApiKeyAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        ttl = getattr(settings, "API_KEY_CACHE_SECONDS", 5)
        if not header or ttl <= 0:
            return super().authenticate(request)
        digest = hashlib.sha256(header.encode()).hexdigest()
        now = time.monotonic()
        entry = _cache.get(digest)
        if entry is not None and entry[0] > now:
            _, principal, api_key = entry
            return principal, api_key
        result = super().authenticate(request)
        if result is not None:
            principal, api_key = result
            with _lock:
                if len(_cache) >= _MAX_ENTRIES:
                    _cache.clear()
                _cache[digest] = (now + ttl, principal, api_key)
        return result
