from __future__ import annotations

from billing_kit.formatting import iso_seconds
from identity.models import organization_lago_id
from webhooks.models import WebhookEndpoint


def render_webhook_endpoint(endpoint: WebhookEndpoint, *, secret: str | None = None) -> dict:
    """Lago's ``webhook_endpoint`` object; ``secret`` only in create/rotate responses."""
    data = {
        "lago_id": str(endpoint.id),
        "lago_organization_id": str(organization_lago_id(endpoint.service_id)),
        "webhook_url": endpoint.url,
        "signature_algo": endpoint.signature_algo,
        "name": endpoint.name or None,
        "event_types": endpoint.event_types,
        "active": endpoint.is_active,
        "disabled_reason": endpoint.disabled_reason or None,
        "created_at": iso_seconds(endpoint.created_at),
    }
    if secret is not None:
        data["secret"] = secret
    return data
