"""Bearer API keys: ``Authorization: Bearer <key>`` identifies the calling Service.

``ApiKeyAuthentication`` costs a database round trip per request; at thousands of
events per second that is the largest single cost, so the ingest endpoints use
``CachedApiKeyAuthentication``: successful lookups are remembered for
``API_KEY_CACHE_SECONDS`` (default 5 s) per process, keyed by the SHA-256 of the
presented header (the secret itself is never kept). A revoked or expired key therefore
stops working within that many seconds; failures are never cached.
"""
from __future__ import annotations

import hashlib
import time
from threading import Lock

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from identity import keys
from identity.models import ApiKey, Service


class ServicePrincipal:
    """``request.user`` of an API call: the Service that holds the presented key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, service: Service) -> None:
        self.service = service

    def __str__(self) -> str:
        return f"service:{self.service.code}"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request) -> tuple[ServicePrincipal, ApiKey] | None:
        # The Idempotency-Key middleware authenticates before the view does: the view
        # reuses that result instead of looking the key up a second time.
        known = getattr(request._request, "api_key_authentication", None)
        if known is not None:
            return known
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise AuthenticationFailed()
        api_key = keys.authenticate(presented=presented.strip())
        if api_key is None:
            raise AuthenticationFailed()
        result = ServicePrincipal(api_key.service), api_key
        request._request.api_key_authentication = result
        return result

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="fusion-billing"'


class IsService(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ServicePrincipal)


_MAX_ENTRIES = 1024
_cache: dict[str, tuple[float, ServicePrincipal, object]] = {}  # ok-float (monotonic deadline)
_lock = Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


class CachedApiKeyAuthentication(ApiKeyAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        ttl = settings.API_KEY_CACHE_SECONDS
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


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "identity.authentication.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The service's API key: `Authorization: Bearer fb_…`."}


class CachedApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """The same key on the event endpoints, where a valid key is remembered for a few seconds."""

    target_class = "identity.authentication.CachedApiKeyAuthentication"
    name = "bearerAuthIngest"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The service's API key (cached per process for API_KEY_CACHE_SECONDS)."}
