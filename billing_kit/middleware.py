"""Request-level safety nets for every API path of every app.

* ``ApiJsonErrorsMiddleware``: outside the admin, nothing answers with an HTML page or a
  traceback.
* ``ApiBodyLimitMiddleware`` refuses hostile requests with a Lago-shaped JSON body
  before anything else reads them (it sits before the event fast path and the
  idempotency middleware):

  - an oversized body: 413 (Django's own limit would answer with an HTML 400);
  - a NUL byte in the path: 404 (PostgreSQL refuses NUL in text, so no resource can
    be named so), with the collection's ``<resource>_not_found`` code;
  - a NUL byte in a query parameter's name or value: 422
    ``{"<name>": ["value_is_invalid"]}``, as the invoice filters answer;
  - a JSON body nested deeper than ``MAX_JSON_DEPTH``: 400 ``invalid_json`` (the JSON
    decoders would raise ``RecursionError``).
"""
from __future__ import annotations

import logging
import re
from array import array
from http import HTTPStatus
from itertools import accumulate

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import (
    BillingError,
    BadRequest,
    ErrorCode,
    NotFound,
    PayloadTooLarge,
    StatementTimeout,
    ValidationFailed,
)
from .http import is_statement_timeout, json_error_response
from .params import names_holding_nul

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
        if is_statement_timeout(exception):
            logger.warning("A statement of %s %s ran past API_STATEMENT_TIMEOUT_MS", request.method, request.path)
            return json_error_response(StatementTimeout())
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return json_error_response(BillingError())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Lago parses with Ruby's JSON, whose default max_nesting is 100: deeper is refused.
MAX_JSON_DEPTH = 100

# The 404 code of a NUL byte in a path, by the collection the path names.
_NOT_FOUND_CODES = {
    "customers": ErrorCode.CUSTOMER_NOT_FOUND,
    "plans": ErrorCode.PLAN_NOT_FOUND,
    "billable_metrics": ErrorCode.BILLABLE_METRIC_NOT_FOUND,
    "subscriptions": ErrorCode.SUBSCRIPTION_NOT_FOUND,
    "events": ErrorCode.EVENT_NOT_FOUND,
    "invoices": ErrorCode.INVOICE_NOT_FOUND,
    "webhook_endpoints": ErrorCode.WEBHOOK_ENDPOINT_NOT_FOUND,
}

# A JSON string (escapes included), and every byte that is not a bracket.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Opening brackets as the signed byte +1, closing ones as -1.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_nesting_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Does this (JSON) body nest arrays and objects more than ``limit`` deep?

    Counted without decoding: brackets inside strings are skipped. A body with at most
    ``limit`` opening brackets (most bodies) costs two ``count`` calls.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    steps = array("b", _JSON_STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > limit


def hostile_request_error(request: HttpRequest) -> BillingError | None:
    """Why an API request must be refused before anything reads it, or None."""
    if "\x00" in request.path_info:
        collection = request.path_info[len(API_PREFIX):].split("/", 1)[0]
        return NotFound(_NOT_FOUND_CODES.get(collection, ErrorCode.RESOURCE_NOT_FOUND))
    invalid = names_holding_nul(request)
    if invalid:
        return ValidationFailed({name: [ErrorCode.VALUE_IS_INVALID] for name in invalid})
    return None


class ApiBodyLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error_response(BadRequest("invalid Content-Length"))
            if length > settings.API_MAX_BODY_BYTES:
                return json_error_response(PayloadTooLarge())
            error = hostile_request_error(request)
            if error is not None:
                return json_error_response(error)
            try:
                too_deep = length > 0 and json_nesting_exceeds(request.body)
            except RequestDataTooBig:  # DATA_UPLOAD_MAX_MEMORY_SIZE, if set below API_MAX_BODY_BYTES
                return json_error_response(PayloadTooLarge())
            if too_deep:
                return json_error_response(BadRequest(
                    f"JSON is nested more than {MAX_JSON_DEPTH} levels deep", code=ErrorCode.INVALID_JSON))
        return self.get_response(request)
