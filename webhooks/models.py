from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q

from identity.models import Service

from . import event_types


class WebhookEndpoint(models.Model):
    """Where a service wants its webhooks, and the secret that signs them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="webhook_endpoints")
    name = models.CharField(max_length=200, blank=True)
    url = models.CharField(max_length=2048, help_text="https only; the resolved address must be public.")
    event_types = models.JSONField(
        null=True, blank=True, help_text='Webhook types to send; empty or ["*"] means all.'
    )
    # What X-Lago-Signature carries (Lago's default is jwt); the Standard Webhooks headers
    # are always signed with ``secret``.
    signature_algo = models.CharField(max_length=16, default="jwt", choices=[("jwt", "jwt"), ("hmac", "hmac")])
    # The secret is needed in clear to sign; it is shown to the integrator once (API)
    # and to staff in the admin, and never logged.
    secret = models.CharField(max_length=128, editable=False)
    previous_secret = models.CharField(max_length=128, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker: failed attempts since the last success. From
    # WEBHOOK_BREAKER_FAILURES on, the circuit opens until ``circuit_open_until`` (no
    # deliveries are claimed for it), then one probe is let through; failing for
    # WEBHOOK_BREAKER_DISABLE_AFTER_HOURS disables the endpoint.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    circuit_open_until = models.DateTimeField(null=True, blank=True, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "created_at"]
        indexes = [models.Index(fields=["service", "is_active"], name="whendpoint_service_active")]

    def __str__(self) -> str:
        return f"{self.service.code}: {self.url}"

    def accepts(self, webhook_type: str) -> bool:
        return event_types.matches(self.event_types, webhook_type)

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """Current secret first; the previous one while its overlap lasts."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets


class OrganizationHmacKey(models.Model):
    """Lago's ``organization.hmac_key``: one per service, keys X-Lago-Signature of its
    ``hmac`` endpoints. Needed in clear to sign; shown to staff in the admin, never logged."""

    service = models.OneToOneField(Service, on_delete=models.PROTECT, related_name="webhook_hmac_key")
    hmac_key = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "organization HMAC key"

    def __str__(self) -> str:
        return f"{self.service.code}: HMAC key"


class WebhookRsaKey(models.Model):
    """The deployment's RSA key for ``jwt`` signatures (Lago's ``RsaPrivateKey``), made once on
    first use unless ``LAGO_RSA_PRIVATE_KEY`` provides it. A single row (pk 1)."""

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON, editable=False)
    private_pem = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "webhook RSA key"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="webhook_rsa_key_single_row")]

    def __str__(self) -> str:
        return "webhook RSA key"


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
        indexes = [
            models.Index(fields=["service", "-created_at"], name="whevent_service_recent"),
            models.Index(fields=["webhook_type"], name="whevent_type"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_type} {self.id}"

    @property
    def webhook_id(self) -> str:
        """``webhook-id`` / ``X-Lago-Unique-Key``: the same on every attempt and replay."""
        return str(self.id)


class WebhookDelivery(models.Model):
    """One event to one endpoint: its retry state machine."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    STATUS_CHOICES = [(PENDING, "pending"), (SUCCEEDED, "succeeded"), (DEAD, "dead letter")]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=PENDING)
    attempts_count = models.PositiveIntegerField(default=0, help_text="Attempts since creation or the last replay.")
    replay_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker holds the delivery until this time; a crashed worker's claim expires
    # and the sweeper sends the delivery again (same webhook-id).
    claimed_until = models.DateTimeField(null=True, blank=True)
    # A task was queued for the delivery; the sweeper leaves it alone until then.
    dispatched_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "dead"]), name="webhook_delivery_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="whdelivery_due"),
            models.Index(fields=["status", "-created_at"], name="whdelivery_status"),
        ]

    def __str__(self) -> str:
        return f"{self.event.webhook_type} → {self.endpoint.url} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt, kept for the attempt history."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"
    OUTCOME_CHOICES = [(SUCCEEDED, "succeeded"), (FAILED, "failed"), (ABANDONED, "abandoned (worker lost)")]

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    attempt_number = models.PositiveIntegerField()
    replay_round = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=OUTCOME_CHOICES)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    signed_timestamp = models.BigIntegerField(null=True, blank=True, help_text="webhook-timestamp sent")
    connected_ip = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"attempt {self.attempt_number} ({self.outcome})"
