"""The HTTP edge of the error convention: each domain error class has one status, and
every failure becomes Lago's JSON body ``{"status", "error", "code", "error_details"}``,
never a traceback."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from .lago_surface import unsupported_code
from .errors import (
    BillingError,
    BadRequest,
    Conflict,
    ErrorCode,
    Forbidden,
    NotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StatementTimeout,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[BillingError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    NotAllowed: 405,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    TooManyRequests: 429,
    StatementTimeout: 503,
    ServiceUnavailable: 503,
}

# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (query_canceled).
_QUERY_CANCELED = "57014"


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (a psycopg error, or Django's wrapping it) is a cancelled statement."""
    cause: BaseException | None = exc
    while cause is not None:
        if getattr(cause, "sqlstate", None) == _QUERY_CANCELED:
            return True
        cause = cause.__cause__
    return False


def status_of(error: BillingError) -> int:
    explicit = getattr(error, "http_status", None)
    if explicit is not None:
        return int(explicit)
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_body(error: BillingError) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_of(error), "error": error.error}
    if error.code is not None:
        body["code"] = str(error.code)
    if error.error_details is not None:
        body["error_details"] = error.error_details
    return body


def error_response(error: BillingError) -> Response:
    return Response(error_body(error), status=status_of(error))


def json_error_response(error: BillingError) -> JsonResponse:
    """The same body as ``error_response``, for middleware answering before or around DRF."""
    return JsonResponse(error_body(error), status=status_of(error))


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
    "required": ErrorCode.VALUE_IS_MANDATORY,
    "null": ErrorCode.VALUE_IS_MANDATORY,
    "blank": ErrorCode.VALUE_IS_MANDATORY,
    "invalid": ErrorCode.VALUE_IS_INVALID,
    "invalid_choice": ErrorCode.VALUE_IS_INVALID,
    "max_length": ErrorCode.VALUE_IS_TOO_LONG,
    "min_value": ErrorCode.VALUE_IS_OUT_OF_RANGE,
    "max_value": ErrorCode.VALUE_IS_OUT_OF_RANGE,
    "unique": ErrorCode.VALUE_ALREADY_EXIST,
}


def _lago_code(detail: drf_exceptions.ErrorDetail) -> str:
    return str(_DRF_TO_LAGO_CODES.get(detail.code or "", detail.code or ErrorCode.VALUE_IS_INVALID))


class _DrfError(BillingError):
    """A DRF exception the table above does not name, kept with its own status."""

    def __init__(self, exc: drf_exceptions.APIException) -> None:
        super().__init__(exc.default_code, error=str(exc.detail))
        self.http_status = exc.status_code


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception hook: every failure becomes a Lago-shaped JSON body, never a traceback."""
    if isinstance(exc, BillingError):
        return error_response(exc)
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return error_response(Unauthorized())
    if isinstance(exc, drf_exceptions.ParseError):
        return error_response(BadRequest(str(exc.detail), code=ErrorCode.INVALID_JSON))
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return error_response(UnsupportedMediaType())
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        # A Lago path served here without this method names what is not supported.
        request = context.get("request")
        code = unsupported_code(request.path.split("/api/v1/", 1)[-1]) if request is not None else ""
        return error_response(NotAllowed(None if code.startswith("resource_") or not code else code))
    if isinstance(exc, drf_exceptions.NotFound):
        return error_response(NotFound())
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return error_response(Forbidden())
    if isinstance(exc, drf_exceptions.Throttled):
        response = error_response(TooManyRequests())
        # DRF sets ``wait`` in Throttled.__init__; the stubs do not declare it.
        if exc.wait is not None:  # type: ignore[attr-defined]
            response["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        return response
    if isinstance(exc, drf_exceptions.ValidationError):
        return error_response(ValidationFailed(_drf_details_to_lago(exc.detail)))
    if isinstance(exc, RequestDataTooBig):
        return error_response(PayloadTooLarge())
    if isinstance(exc, drf_exceptions.APIException):
        return error_response(_DrfError(exc))
    if is_statement_timeout(exc):
        logger.warning("A statement of %s ran past API_STATEMENT_TIMEOUT_MS", type(context.get("view")).__name__)
        return error_response(StatementTimeout())
    view = context.get("view")
    logger.exception("Unhandled error in API view %s", type(view).__name__ if view else "?")
    return error_response(BillingError())


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Unknown routes answer Lago's 404 body (the admin keeps its HTML pages)."""
    if request.path.startswith("/admin/"):
        return page_not_found(request, exception)
    return json_error_response(NotFound())
