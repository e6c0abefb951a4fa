from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from identity.models import Service

from .models import WebhookEvent


def record_event(*, service: Service, webhook_type: str, object_type: str,
                 payload: dict[str, Any]) -> WebhookEvent:
    """Write the outbound event in the caller's transaction (the outbox)."""
    envelope = {"webhook_type": webhook_type, "object_type": object_type, object_type: payload}
    body = json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()
    return WebhookEvent.objects.create(
        service=service, webhook_type=webhook_type, object_type=object_type, body=body
    )
