"""OpenAPI of the webhook endpoint object and its inputs."""
from __future__ import annotations

from typing import Any

from billing_kit import examples
from billing_kit.wire import array, component, obj

from webhooks.event_types import ACCEPTED, WILDCARD

WEBHOOK_URL = {"type": "string", "format": "uri", "maxLength": 2048, "pattern": r"^https?://",
               "description": "https:// (plain http only for WEBHOOK_ALLOW_HTTP_HOSTS); no credentials; a "
                              "public address (private, loopback and link-local ones are refused, "
                              "url_is_invalid); a port other than 443 only for WEBHOOK_ALLOWED_PORTS."}
EVENT_TYPES = {"type": "array", "items": {"type": "string", "enum": [*sorted(ACCEPTED), WILDCARD]},
               "nullable": True, "description": "Webhook types sent to this endpoint; null or [\"*\"]: all."}

WEBHOOK_ENDPOINT = component("WebhookEndpoint", obj({
    "lago_id": "uuid", "lago_organization_id": "uuid", "webhook_url": "string",
    "signature_algo": {"type": "string", "enum": ["jwt", "hmac"]},
    "name": "string?", "event_types": {**EVENT_TYPES, "description": "null: every type."},
    "active": "boolean", "disabled_reason": "string?", "created_at": "datetime",
    "secret": {"type": "string", "description": "The signing secret; only in the answers of create and "
                                                "rotate_secret (shown once)."},
}, optional=("secret",)))

_INPUT: dict[str, Any] = {"webhook_url": WEBHOOK_URL, "name": {"type": "string", "maxLength": 200, "nullable": True},
          "event_types": {**EVENT_TYPES, "maxItems": 100},
          "signature_algo": {"type": "string", "enum": ["jwt", "hmac"], "description": "Default jwt."}}
ENDPOINT_INPUT = component("WebhookEndpointInput", obj(_INPUT, optional=("name", "event_types", "signature_algo")))
ENDPOINT_UPDATE_INPUT = component("WebhookEndpointUpdateInput", obj(_INPUT, optional=tuple(_INPUT)))

__all__ = ["ENDPOINT_INPUT", "ENDPOINT_UPDATE_INPUT", "EVENT_TYPES", "WEBHOOK_ENDPOINT", "WEBHOOK_URL", "array"]

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("webhook_endpoint", webhook_url="https://hooli.test/lago/webhooks", name="Hooli billing",
                event_types=["invoice.created", "invoice.payment_status_updated"], signature_algo="jwt",
                active=True, disabled_reason=None)
