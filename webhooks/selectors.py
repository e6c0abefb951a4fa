"""Reads of the webhooks area, always scoped to the calling service."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Min, QuerySet
from django.utils import timezone

from identity.models import Service

from .models import WebhookDelivery, WebhookEndpoint


def endpoints_for(*, service: Service) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(service=service, deleted_at__isnull=True).order_by("created_at", "id")


def endpoint_for(*, service: Service, lago_id: str) -> WebhookEndpoint | None:
    try:
        key = UUID(lago_id)
    except (ValueError, TypeError):
        return None
    return endpoints_for(service=service).filter(id=key).first()


def delivery_health(*, now: datetime | None = None) -> dict:
    """Backlog figures for an ops health check (not scoped: staff/monitoring only)."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(status=WebhookDelivery.PENDING, next_attempt_at__lte=now)
    oldest = due.aggregate(oldest=Min("next_attempt_at"))["oldest"]
    return {
        "due": due.count(),
        "oldest_due_seconds": int((now - oldest).total_seconds()) if oldest else 0,
        "dead_letters_24h": WebhookDelivery.objects.filter(
            status=WebhookDelivery.DEAD, dead_at__gte=now - timedelta(hours=24)).count(),
    }


def endpoint_health(*, now: datetime | None = None) -> dict:
    """Circuit-breaker figures for an ops health check (not scoped: staff/monitoring only)."""
    now = now or timezone.now()
    live = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    return {
        "circuits_open": live.filter(is_active=True, circuit_open_until__gt=now).count(),
        "endpoints_failing": live.filter(is_active=True, consecutive_failures__gt=0).count(),
        "endpoints_disabled": live.filter(is_active=False).count(),
    }
