"""``IdempotencyKeyMiddleware``: the ``Idempotency-Key`` header
(draft-ietf-httpapi-idempotency-key-header, Stripe semantics) for every
POST/PUT/PATCH/DELETE of every ``/api/v1`` endpoint, whichever app owns the view:

  - keys are scoped to the calling service (the API key is resolved here);
  - the first successful (2xx) response is stored with the business changes, in the
    same transaction, and replayed verbatim (``Idempotent-Replayed: true``);
  - the same key with another method, path or body → 422;
  - a request still in flight with that key → 409;
  - a 4xx/5xx response is not stored (nothing happened; Stripe does the same), the
    key is released and the request may be retried;
  - keys are kept for ``IDEMPOTENCY_KEY_TTL_HOURS`` (≥ 24 h), then purged;
  - the store never keeps a credential: members of a stored body named in
    ``SECRET_MEMBERS`` (a webhook endpoint's signing secret, shown once) are removed
    before it is written, so a replay answers what was done without the secret (the
    client rotates the secret if it lost the first response).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from rest_framework.exceptions import APIException
from rest_framework.request import Request

from billing_kit.errors import BadRequest, Conflict, ErrorCode, ValidationFailed
from billing_kit.http import json_error_response
from billing_kit.middleware import API_PREFIX
from identity.authentication import ApiKeyAuthentication
from identity.models import IdempotencyKey, Service

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY_LENGTH = 255
ClaimOutcome = Literal["claimed", "replay", "mismatch", "in_flight"]
# JSON members, at any depth of a response, whose value is a credential.
SECRET_MEMBERS = frozenset({"secret", "api_key", "signing_secret", "password", "token", "private_key"})


def _without_secrets(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        removed = False
        kept = {}
        for name, member in value.items():
            if name in SECRET_MEMBERS:
                removed = True
                continue
            kept[name], inner = _without_secrets(member)
            removed = removed or inner
        return kept, removed
    if isinstance(value, list):
        items = [_without_secrets(item) for item in value]
        return [item for item, _ in items], any(inner for _, inner in items)
    return value, False


def storable_body(body: bytes) -> bytes:
    """``body`` as the store may keep it: without any credential member."""
    if not any(f'"{name}"'.encode() in body for name in SECRET_MEMBERS):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        # Not JSON yet naming a credential: keep nothing rather than the credential.
        return b""
    cleaned, removed = _without_secrets(data)
    return json.dumps(cleaned, separators=(",", ":")).encode() if removed else body


def request_fingerprint(request: HttpRequest) -> str:
    """What the key promises to mean: method, path, query and body.

    JSON bodies are compared by content (key order and spacing do not matter).
    """
    body = request.body
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    digest = hashlib.sha256()
    method = request.method or ""  # always set on a request Django serves
    for part in (method.encode(), request.path.encode(), request.META.get("QUERY_STRING", "").encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _resolve_service(request: HttpRequest) -> Service | None:
    """The calling service, or None (the view will then answer 401 itself)."""
    try:
        result = ApiKeyAuthentication().authenticate(Request(request))
    except APIException:
        return None
    return result[1].service if result else None


class IdempotencyKeyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.META.get(IDEMPOTENCY_HEADER)
        if key is None or request.method not in WRITE_METHODS or not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if not key or len(key) > MAX_KEY_LENGTH:
            return json_error_response(
                BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"))
        service = _resolve_service(request)
        if service is None:
            return self.get_response(request)
        return self._handle(request, service=service, key=key)

    def _handle(self, request: HttpRequest, *, service: Service, key: str) -> HttpResponse:
        fingerprint = request_fingerprint(request)
        record, outcome = claim_idempotency_key(service=service, key=key, fingerprint=fingerprint)
        if outcome == "mismatch":
            return json_error_response(ValidationFailed({"idempotency_key": [ErrorCode.PAYLOAD_MISMATCH]}))
        if outcome == "in_flight" or record is None:  # no record: only ever "in_flight"
            return json_error_response(Conflict(ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT))
        if outcome == "replay":
            assert record.response_body is not None  # a completed key always stored its response
            replayed = HttpResponse(
                bytes(record.response_body), status=record.response_status,
                content_type=record.response_content_type,
            )
            replayed["Idempotent-Replayed"] = "true"
            return replayed

        response = None
        try:
            with transaction.atomic():
                response = self.get_response(request)
                if 200 <= response.status_code < 300 and not getattr(response, "streaming", False):
                    IdempotencyKey.objects.filter(pk=record.pk).update(
                        state=IdempotencyKey.State.COMPLETED,
                        response_status=response.status_code,
                        response_body=storable_body(response.content),
                        response_content_type=response.get("Content-Type", "application/json"),
                        completed_at=timezone.now(),
                    )
                elif response.status_code >= 500:
                    transaction.set_rollback(True)
        finally:
            if response is None or not (200 <= response.status_code < 300):
                IdempotencyKey.objects.filter(pk=record.pk, state=IdempotencyKey.State.IN_FLIGHT).delete()
        return response


def claim_idempotency_key(*, service: Service, key: str,
                          fingerprint: str) -> tuple[IdempotencyKey | None, ClaimOutcome]:
    """Claim ``key`` for this request. Returns ``(record, outcome)``.

    outcome: ``"claimed"`` (run the request), ``"replay"``, ``"mismatch"`` or
    ``"in_flight"``. Runs in autocommit so that concurrent requests see the claim.
    """
    now = timezone.now()
    ttl = timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    lock_timeout = timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS)
    record: IdempotencyKey | None
    for _attempt in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    service=service, key=key, request_fingerprint=fingerprint,
                    state=IdempotencyKey.State.IN_FLIGHT, created_at=now, locked_at=now,
                )
            return record, "claimed"
        except IntegrityError:
            pass
        record = IdempotencyKey.objects.filter(service=service, key=key).first()
        if record is None:  # released between our insert and our read: try again
            continue
        expired = record.created_at < now - ttl
        stale_lock = record.state == IdempotencyKey.State.IN_FLIGHT and record.locked_at < now - lock_timeout
        if expired or (stale_lock and record.request_fingerprint == fingerprint):
            taken = IdempotencyKey.objects.filter(pk=record.pk, locked_at=record.locked_at).update(
                request_fingerprint=fingerprint, state=IdempotencyKey.State.IN_FLIGHT,
                created_at=now, locked_at=now, response_status=None, response_body=None,
                completed_at=None,
            )
            if taken:
                record.refresh_from_db()
                return record, "claimed"
            continue
        if record.request_fingerprint != fingerprint:
            return record, "mismatch"
        if record.state == IdempotencyKey.State.IN_FLIGHT:
            return record, "in_flight"
        return record, "replay"
    return None, "in_flight"
