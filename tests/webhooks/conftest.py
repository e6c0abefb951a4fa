from __future__ import annotations

import pytest
from django.utils import timezone

from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.testing.receiver import WebhookReceiver

INVOICE = {"lago_id": "0b5f0f4e-2a43-4a8b-9c1e-6f7e7e0c1a11", "number": "NXC-2026-0001",
           "total_amount_cents": 1999, "currency": "CAD", "note": "café ✓"}


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def make_endpoint():
    def make(service, url, **kwargs):
        return services.create_endpoint(service=service, url=url, **kwargs)

    return make


@pytest.fixture
def emit():
    def emit_event(service, webhook_type="invoice.created", object_type="invoice", payload=None):
        return services.record_event(service=service, webhook_type=webhook_type, object_type=object_type,
                                     payload=payload if payload is not None else INVOICE)

    return emit_event


def make_due(*deliveries_or_qs) -> None:
    """Time travel: the next attempt is due now."""
    for item in deliveries_or_qs:
        qs = item if hasattr(item, "update") else WebhookDelivery.objects.filter(pk=item.pk)
        qs.update(next_attempt_at=timezone.now())
