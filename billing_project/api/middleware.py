"""Outside the admin, nothing answers with an HTML page or a traceback."""
from __future__ import annotations

import logging
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import ApiError, json_error_response

logger = logging.getLogger(__name__)

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
        return json_error_response(ApiError())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
