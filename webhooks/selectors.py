"""Reads of the webhooks area, always scoped to the calling service."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from identity.models import Service

from .models import WebhookEndpoint


def endpoints_for(*, service: Service) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(service=service, deleted_at__isnull=True).order_by("created_at", "id")


def endpoint_for(*, service: Service, lago_id: str) -> WebhookEndpoint | None:
    try:
        key = UUID(lago_id)
    except (ValueError, TypeError):
        return None
    return endpoints_for(service=service).filter(id=key).first()
