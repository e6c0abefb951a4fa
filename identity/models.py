from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

CURRENCY_CODE_CHECK = r"^[A-Z]{3}$"


class Service(models.Model):
    """A source app (NexaCloud, NexaDesk, ...) that calls the API with its own keys."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    default_currency = models.CharField(max_length=3, default="CAD")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(default_currency__regex=CURRENCY_CODE_CHECK),
                name="service_currency_is_iso_code",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def lago_id(self) -> uuid.UUID:
        """Lago's organization id is a UUID: derived from the primary key, so it never changes."""
        return organization_lago_id(self.pk)


# Fixed for ever: organization ids already sent in webhooks are derived from it.
ORGANIZATION_ID_NAMESPACE = uuid.UUID("6f1d2c3b-8a4e-5f60-9b7c-0d1e2f3a4b5c")


def organization_lago_id(service_pk: int) -> uuid.UUID:
    return uuid.uuid5(ORGANIZATION_ID_NAMESPACE, f"service:{service_pk}")


class ApiKey(models.Model):
    """Only the SHA-256 of the secret is stored; the secret is shown once, at creation."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # The public, displayable part of the key (``fb_<8 hex>``); identifies it for revocation.
    prefix = models.CharField(max_length=32, unique=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["service__code", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.service.code})"


class Customer(models.Model):
    """The unified client: one per real-world customer across every service (one Odoo partner)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    company = models.CharField(max_length=255, blank=True)
    currency = models.CharField(max_length=3, default="CAD")
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=128, blank=True)
    zipcode = models.CharField(max_length=32, blank=True)
    state = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=2, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    tax_identification_number = models.CharField(max_length=64, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    odoo_partner_id = models.PositiveIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "email"]
        constraints = [
            # One customer per real client: emails match case-insensitively.
            models.UniqueConstraint(
                Lower("email"), condition=~Q(email=""), name="customer_unique_email_ci"
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=CURRENCY_CODE_CHECK), name="customer_currency_is_iso_code"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.email or str(self.id)


class AccountLink(models.Model):
    """An app's own account id (``external_id``) in one service, linked to the unified Customer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="account_links")
    external_id = models.CharField(max_length=255)
    external_email = models.EmailField(max_length=254, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="account_links")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "external_id"], name="account_link_unique_per_service"),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_id}"


class IdempotencyKey(models.Model):
    """One ``Idempotency-Key`` a service used on a write; its first 2xx response is replayed.

    Scoped per service (the IETF draft's "composite with the client identity").
    """

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETED = "completed"

    id = models.BigAutoField(primary_key=True)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    locked_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "key"], name="idempotency_key_unique_per_service"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"{self.service_id}:{self.key}"
