from __future__ import annotations

from typing import Any

from rest_framework.views import APIView

from .params import Query, read_query
from .throttling import add_rate_headers


class ServiceAPIView(APIView):
    """Base of every ``/api/v1`` view: authenticated by API key, scoped to ``self.service``.

    Every query a subclass makes must be filtered by ``self.service``.
    """

    # The principal comes from identity's key authentication (the REST_FRAMEWORK default).
    # The kit names no app, so this is an ``identity.models.Service`` by contract.
    @property
    def service(self) -> Any:
        # DRF's stubs type request.user as a Django user; here it is that principal.
        principal: Any = self.request.user
        return principal.service

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # The caller's remaining budget (billing_kit.throttling), on successes and errors alike.
        return add_rate_headers(response, getattr(request._request, "rate_limit_decision", None))

    def query(self, request: Any) -> Query:
        """The declared query parameters of the method handling ``request``."""
        return read_query(request, getattr(self, request.method.lower()))
