from __future__ import annotations

import uuid

from django.db import models

from identity.models import Service


class WebhookEvent(models.Model):
    """Outbox row: written in the transaction of the change it reports; body stored once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="webhook_events")
    webhook_type = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    body = models.BinaryField(help_text="Canonical JSON body, sent verbatim on every attempt.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.webhook_type} {self.id}"
