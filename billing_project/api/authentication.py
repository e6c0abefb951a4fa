"""Bearer API keys: ``Authorization: Bearer <key>`` identifies the calling Service."""
from __future__ import annotations

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
