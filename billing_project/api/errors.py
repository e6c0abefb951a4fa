"""Lago-shaped error bodies: ``{"status", "error", "code", "error_details"}``, JSON always."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    error = "Internal Server Error"
    code: str | None = "internal_error"

    def __init__(self, code: str | None = None, *, error: str | None = None,
                 error_details: Any = None) -> None:
        if code is not None:
            self.code = code
        if error is not None:
            self.error = error
        self.error_details = error_details
        super().__init__(self.error)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "error": self.error}
        if self.code is not None:
            body["code"] = self.code
        if self.error_details is not None:
            body["error_details"] = self.error_details
        return body


class BadRequest(ApiError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(code, error=f"BadRequest: {message}")


class Unauthorized(ApiError):
    status = 401
    error = "Unauthorized"
    code = None


class Forbidden(ApiError):
    status = 403
    error = "Forbidden"
    code = "forbidden"


class NotFound(ApiError):
    """``code`` is ``<resource>_not_found``, e.g. ``customer_not_found``."""

    status = 404
    error = "Not Found"
    code = "resource_not_found"


class MethodNotAllowed(ApiError):
    """Lago uses 405 for state violations such as ``no_active_subscription``."""

    status = 405
    error = "Method Not Allowed"
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    error = "Conflict"
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    error = "Payload Too Large"
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    error = "Unsupported Media Type"
    code = "unsupported_media_type"


class TooManyRequests(ApiError):
    status = 429
    error = "Too Many Requests"
    code = "too_many_requests"


class ValidationFailed(ApiError):
    """422 with ``error_details`` such as ``{"code": ["value_is_mandatory"]}``."""

    status = 422
    error = "Unprocessable Entity"
    code = "validation_errors"

    def __init__(self, error_details: dict[str, Any], *, code: str | None = None) -> None:
        super().__init__(code, error_details=error_details)


def error_response(error: ApiError) -> Response:
    return Response(error.body(), status=error.status)


def json_error_response(error: ApiError) -> JsonResponse:
    """The same body as ``error_response``, for middleware answering before or around DRF."""
    return JsonResponse(error.body(), status=error.status)


def _drf_details_to_lago(detail: Any) -> Any:
    """DRF validation details -> Lago's ``{"field": ["code", ...]}`` using the error codes."""
    if isinstance(detail, dict):
        return {str(key): _drf_details_to_lago(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if all(isinstance(item, drf_exceptions.ErrorDetail) for item in detail):
            return [_lago_code(item) for item in detail]
        return [_drf_details_to_lago(item) for item in detail]
    if isinstance(detail, drf_exceptions.ErrorDetail):
        return [_lago_code(detail)]
    return detail


_DRF_TO_LAGO_CODES = {
    "required": "value_is_mandatory",
    "null": "value_is_mandatory",
    "blank": "value_is_mandatory",
    "invalid": "value_is_invalid",
    "invalid_choice": "value_is_invalid",
    "max_length": "value_is_too_long",
    "min_value": "value_is_out_of_range",
    "max_value": "value_is_out_of_range",
    "unique": "value_already_exist",
}


def _lago_code(detail: drf_exceptions.ErrorDetail) -> str:
    return _DRF_TO_LAGO_CODES.get(detail.code, detail.code or "value_is_invalid")


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception hook: every failure becomes a Lago-shaped JSON body, never a traceback."""
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return error_response(Unauthorized())
    if isinstance(exc, drf_exceptions.ParseError):
        return error_response(BadRequest(str(exc.detail), code="invalid_json"))
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return error_response(UnsupportedMediaType())
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return error_response(MethodNotAllowed())
    if isinstance(exc, drf_exceptions.NotFound):
        return error_response(NotFound())
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return error_response(Forbidden())
    if isinstance(exc, drf_exceptions.Throttled):
        response = error_response(TooManyRequests())
        if exc.wait is not None:
            response["Retry-After"] = str(int(exc.wait))
        return response
    if isinstance(exc, drf_exceptions.ValidationError):
        return error_response(ValidationFailed(_drf_details_to_lago(exc.detail)))
    if isinstance(exc, RequestDataTooBig):
        return error_response(PayloadTooLarge())
    if isinstance(exc, drf_exceptions.APIException):
        error = ApiError(exc.default_code, error=str(exc.detail))
        error.status = exc.status_code
        return error_response(error)
    view = context.get("view")
    logger.exception("Unhandled error in API view %s", type(view).__name__ if view else "?")
    return error_response(ApiError())


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown routes answer Lago's 404 body (the admin keeps its HTML pages)."""
    if request.path.startswith("/admin/"):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception)
    return json_error_response(NotFound())
