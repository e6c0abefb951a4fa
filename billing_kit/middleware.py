"""Request-level safety nets for every API path of every app.

* ``ApiJsonErrorsMiddleware``: outside the admin, nothing answers with an HTML page or a
  traceback.
* ``ApiBodyLimitMiddleware`` refuses oversized bodies with a Lago-shaped JSON 413
  before anything reads them (Django's own limit would answer with an HTML 400).
"""
from __future__ import annotations

import logging
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import BillingError, BadRequest, PayloadTooLarge
from .http import json_error_response

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
_JSON_PREFIXES = ("/api/", "/health", "/ops/")


def _is_json_path(path: str) -> bool:
    return path.startswith(_JSON_PREFIXES)


class ApiJsonErrorsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            _is_json_path(request.path)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse(
                {"status": response.status_code, "error": _phrase(response.status_code)},
                status=response.status_code,
            )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_json_path(request.path):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return json_error_response(BillingError())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiBodyLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error_response(BadRequest("invalid Content-Length"))
            if length > settings.API_MAX_BODY_BYTES:
                return json_error_response(PayloadTooLarge())
        return self.get_response(request)
