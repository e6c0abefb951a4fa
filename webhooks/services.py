"""Writes of the webhooks area: the outbox entry point and endpoint management."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing_kit.errors import ErrorCode
from identity.models import Service

from . import delivery, event_types, signing, ssrf
# Part of the outbox port: identity, below webhooks, may import this module only.
from .event_types import WebhookType as WebhookType
from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent


class EndpointInvalid(Exception):
    """``error_details`` in Lago's shape, e.g. ``{"webhook_url": [ErrorCode.URL_IS_INVALID]}``."""

    def __init__(self, error_details: dict[str, list[ErrorCode]], message: str = "") -> None:
        super().__init__(message or str(error_details))
        self.error_details = error_details
        self.message = message


def canonical_body(envelope: dict[str, Any]) -> bytes:
    """The exact bytes signed and sent on every attempt (compact JSON, ASCII)."""
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def organization_id(service: Service) -> str:
    # Lago's organization is the calling Service (see identity.api.organization); a UUID as Lago's.
    return str(service.lago_id)


@transaction.atomic(savepoint=False)
def record_event(*, service: Service, webhook_type: str, object_type: str,
                 payload: dict[str, Any]) -> WebhookEvent:
    """Write the outbound event in the caller's transaction (the outbox).

    One delivery per active endpoint of ``service`` subscribed to ``webhook_type``;
    delivery is queued only once the caller's transaction commits.
    """
    if not event_types.WEBHOOK_TYPE_PATTERN.fullmatch(webhook_type):
        raise ValueError(f"webhook_type {webhook_type!r} is not of the form 'object.action'")
    if not event_types.OBJECT_TYPE_PATTERN.fullmatch(object_type) or object_type in (
        "webhook_type", "object_type", "organization_id"
    ):
        raise ValueError(f"object_type {object_type!r} is not a valid key")
    envelope = {
        "webhook_type": webhook_type,
        "object_type": object_type,
        "organization_id": organization_id(service),
        object_type: payload,
    }
    event = WebhookEvent.objects.create(
        service=service, webhook_type=webhook_type, object_type=object_type, body=canonical_body(envelope),
    )
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(service=service, is_active=True, deleted_at__isnull=True)
        if e.accepts(webhook_type)
    ]
    if endpoints:
        now = timezone.now()
        grace = now + timedelta(seconds=settings.WEBHOOK_DISPATCH_GRACE_SECONDS)
        WebhookDelivery.objects.bulk_create([
            WebhookDelivery(event=event, endpoint=e, next_attempt_at=now, dispatched_until=grace)
            for e in endpoints
        ])
        delivery.dispatch_after_commit(event.id)
    return event


# --- endpoints --------------------------------------------------------------------

def validate_url(url: str) -> str:
    """SSRF guard at save time (it runs again at every delivery); returns the URL to store.

    The stored form is normalised: IDNA host, percent-encoded path and query (UTF-8),
    no default port, no fragment, so what is stored is exactly what is sent.
    """
    try:
        target = ssrf.check_url(url, allow_http_hosts=settings.WEBHOOK_ALLOW_HTTP_HOSTS, resolver=delivery.resolver(),
                                allowed_ports=settings.WEBHOOK_ALLOWED_PORTS)
    except ssrf.UnsafeWebhookUrl as exc:
        raise EndpointInvalid({"webhook_url": [ErrorCode.URL_IS_INVALID]}, str(exc)) from exc
    return target.parsed.url


def validate_event_types(types: list[str] | None) -> list[str] | None:
    if types is None or types == []:
        return None
    unknown = [t for t in types if t != event_types.WILDCARD and t not in event_types.ACCEPTED]
    if unknown:
        raise EndpointInvalid({"event_types": [ErrorCode.VALUE_IS_INVALID]},
                              f"unknown event types: {unknown}")
    return list(dict.fromkeys(types))


@dataclass(frozen=True)
class IssuedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


@transaction.atomic
def create_endpoint(*, service: Service, url: str, name: str = "", event_types_filter: list[str] | None = None,
                    is_active: bool = True, signature_algo: str = signing.ALGO_JWT) -> IssuedEndpoint:
    url = validate_url(url)
    types = validate_event_types(event_types_filter)
    # Lock the service row so two concurrent creates cannot both pass the limit check.
    Service.objects.select_for_update().filter(pk=service.pk).first()
    live = WebhookEndpoint.objects.filter(service=service, deleted_at__isnull=True).count()
    if live >= settings.WEBHOOK_ENDPOINTS_PER_SERVICE:
        raise EndpointInvalid({"webhook_endpoint": [ErrorCode.LIMIT_REACHED]},
                              f"at most {settings.WEBHOOK_ENDPOINTS_PER_SERVICE} endpoints per service")
    secret = signing.generate_secret()
    endpoint = WebhookEndpoint.objects.create(
        service=service, url=url, name=name, event_types=types, secret=secret, is_active=is_active,
        signature_algo=_checked_algo(signature_algo),
    )
    return IssuedEndpoint(endpoint, secret)


_UNSET: Any = object()


def _checked_algo(signature_algo: str) -> str:
    if signature_algo not in signing.LAGO_ALGOS:
        raise EndpointInvalid({"signature_algo": [ErrorCode.VALUE_IS_INVALID]})
    return signature_algo


@transaction.atomic
def update_endpoint(*, endpoint: WebhookEndpoint, url: str = _UNSET, name: str = _UNSET,
                    event_types_filter: list[str] | None = _UNSET, signature_algo: str = _UNSET
                    ) -> WebhookEndpoint:
    fields = []
    if signature_algo is not _UNSET:
        endpoint.signature_algo = _checked_algo(signature_algo)
        fields.append("signature_algo")
    if url is not _UNSET:
        endpoint.url = validate_url(url)
        fields.append("url")
    if name is not _UNSET:
        endpoint.name = name
        fields.append("name")
    if event_types_filter is not _UNSET:
        endpoint.event_types = validate_event_types(event_types_filter)
        fields.append("event_types")
    if fields:
        endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


@transaction.atomic
def delete_endpoint(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Soft delete: the delivery history stays; nothing more is sent to it.

    Its pending deliveries become dead letters, still visible in the admin.
    """
    now = timezone.now()
    endpoint.deleted_at = now
    endpoint.is_active = False
    endpoint.disabled_reason = "deleted"
    endpoint.disabled_at = now
    endpoint.save(update_fields=["deleted_at", "is_active", "disabled_reason", "disabled_at", "updated_at"])
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.PENDING).update(
        status=WebhookDelivery.DEAD, dead_at=now, next_attempt_at=None, last_error="endpoint deleted",
    )
    return endpoint


@transaction.atomic
def rotate_secret(*, endpoint: WebhookEndpoint) -> IssuedEndpoint:
    """New secret now; the old one keeps signing alongside for the overlap period."""
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(hours=settings.WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS)
    endpoint.secret = signing.generate_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return IssuedEndpoint(endpoint, endpoint.secret)


@transaction.atomic
def set_endpoint_active(*, endpoint: WebhookEndpoint, active: bool, reason: str = "") -> WebhookEndpoint:
    if endpoint.deleted_at is not None and active:
        raise EndpointInvalid({"webhook_endpoint": [ErrorCode.IS_DELETED]},
                              "a deleted endpoint cannot be enabled")
    now = timezone.now()
    endpoint.is_active = active
    endpoint.disabled_reason = "" if active else (reason or "disabled by staff")
    endpoint.disabled_at = None if active else now
    fields = ["is_active", "disabled_reason", "disabled_at", "updated_at"]
    if active:
        # Re-enabled by staff: the circuit breaker starts afresh.
        endpoint.consecutive_failures, endpoint.failing_since, endpoint.circuit_open_until = 0, None, None
        fields += ["consecutive_failures", "failing_since", "circuit_open_until"]
    endpoint.save(update_fields=fields)
    if active:
        # Deliveries that came due while it was disabled go out now.
        ids = list(WebhookDelivery.objects.filter(
            endpoint=endpoint, status=WebhookDelivery.PENDING, next_attempt_at__lte=now,
        ).values_list("id", flat=True))
        _queue_after_commit(ids)
    return endpoint


# --- replay -----------------------------------------------------------------------

@transaction.atomic
def replay_deliveries(*, delivery_ids: list[UUID]) -> int:
    """Send again from scratch (fresh retry budget), whatever the state, incl. dead letters.

    The ``webhook-id`` stays the event's id, so receivers can still dedupe.
    A delivery being sent right now is left alone.
    """
    now = timezone.now()
    rows = list(
        WebhookDelivery.objects.select_for_update()
        .filter(id__in=delivery_ids)
        .exclude(claimed_until__gt=now)
        .values_list("id", flat=True)
    )
    WebhookDelivery.objects.filter(id__in=rows).update(
        status=WebhookDelivery.PENDING, attempts_count=0, replay_count=F("replay_count") + 1,
        next_attempt_at=now, claimed_until=None, dead_at=None, succeeded_at=None,
        dispatched_until=now + timedelta(seconds=settings.WEBHOOK_DISPATCH_GRACE_SECONDS),
    )
    _queue_after_commit(rows)
    return len(rows)


def replay_events(*, event_ids: list[UUID]) -> int:
    ids = list(WebhookDelivery.objects.filter(event_id__in=event_ids).values_list("id", flat=True))
    return replay_deliveries(delivery_ids=ids)


def _queue_after_commit(ids: list[UUID]) -> None:
    for start in range(0, len(ids), delivery.DISPATCH_CHUNK):
        chunk = ids[start:start + delivery.DISPATCH_CHUNK]
        transaction.on_commit(partial(delivery.dispatch_deliveries, chunk), robust=True)
