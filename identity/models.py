from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.dispatch import Signal

CURRENCY_CODE_CHECK = r"^[A-Z]{3}$"
# Lago's invoice grace period, in days (organization and customer).
MAX_INVOICE_GRACE_DAYS = 365

# Sent in the transaction that changed an invoice grace period: ``service`` (its organization
# setting changed, ``link`` None) or ``link`` (a customer's). Metering, above identity, keeps the
# grace of the subscriptions it applies to in step (``metering.services.subscriptions``).
invoice_grace_period_changed = Signal()


class Service(models.Model):
    """A source app (NexaCloud, NexaDesk, ...) that calls the API with its own keys."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    default_currency = models.CharField(max_length=3, default="CAD")
    # Lago's lenient event mode: an event for an unknown subscription or metric, or without
    # the metric's property, is accepted (kept, not billed) and reported by an
    # ``events.errors`` webhook instead of a 422 (docs/api.md "Lenient events").
    lenient_events = models.BooleanField(
        default=False, help_text="Accept events for unknown subscriptions or metrics (kept, never billed) and "
                                 "report them with events.errors webhooks instead of a 422.")
    # Lago's organization billing_configuration.invoice_grace_period: days after a window's end
    # during which it still takes late usage. A customer's own setting beats it; null = the
    # deployment default RATING_GRACE_SECONDS (docs/rating.md "Grace").
    invoice_grace_period = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_INVOICE_GRACE_DAYS)],
        help_text="Days a billing window still takes late usage after its end (Lago's invoice grace period), "
                  "unless the customer has its own. Empty: RATING_GRACE_SECONDS.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(default_currency__regex=CURRENCY_CODE_CHECK),
                name="service_currency_is_iso_code",
            ),
            models.CheckConstraint(
                condition=Q(invoice_grace_period__lte=MAX_INVOICE_GRACE_DAYS),
                name="service_invoice_grace_period_at_most_a_year",
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
    """The unified client: one per real-world customer across every service (one Odoo commercial partner).

    It holds only the identity fact that folded accounts together (the email) and the Odoo
    commercial partner. Every profile field lives on the service's own ``AccountLink``: a
    service never reads or writes what another service set.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, blank=True)
    odoo_partner_id = models.PositiveIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email", "created_at"]
        constraints = [
            # One customer per real client: emails match case-insensitively.
            models.UniqueConstraint(
                Lower("email"), condition=~Q(email=""), name="customer_unique_email_ci"
            ),
        ]

    def __str__(self) -> str:
        return self.email or str(self.id)


class CustomerType(models.TextChoices):
    COMPANY = "company"
    INDIVIDUAL = "individual"


class AccountLink(models.Model):
    """An app's own account (``external_id``) in one service: what Lago calls the customer.

    Its profile (name, addresses, tax id, billing settings, metadata, payment method) is the
    service's own; ``customer`` is the unified client it was folded into by email when it was
    created, and never changes afterwards (an email change cannot re-point it).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="account_links")
    external_id = models.CharField(max_length=255)
    external_email = models.EmailField(max_length=254, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="account_links")
    # Lago's per-organization customer number, and the slug derived from it once.
    sequential_id = models.PositiveIntegerField(editable=False)
    slug = models.CharField(max_length=64, blank=True, editable=False)
    name = models.CharField(max_length=255, blank=True)
    firstname = models.CharField(max_length=120, blank=True)
    lastname = models.CharField(max_length=120, blank=True)
    legal_name = models.CharField(max_length=255, blank=True)
    legal_number = models.CharField(max_length=255, blank=True)
    customer_type = models.CharField(max_length=16, choices=CustomerType.choices, blank=True)
    # Null until the service sets it or the first subscription gives it the plan's (as Lago).
    currency = models.CharField(max_length=3, null=True, blank=True)
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=128, blank=True)
    zipcode = models.CharField(max_length=32, blank=True)
    state = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=2, blank=True)
    shipping_address_line1 = models.CharField(max_length=255, blank=True)
    shipping_address_line2 = models.CharField(max_length=255, blank=True)
    shipping_city = models.CharField(max_length=128, blank=True)
    shipping_zipcode = models.CharField(max_length=32, blank=True)
    shipping_state = models.CharField(max_length=64, blank=True)
    shipping_country = models.CharField(max_length=2, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    url = models.CharField(max_length=255, blank=True)
    tax_identification_number = models.CharField(max_length=64, blank=True)
    net_payment_term = models.PositiveIntegerField(null=True, blank=True)
    invoice_grace_period = models.PositiveIntegerField(null=True, blank=True)
    document_locale = models.CharField(max_length=16, blank=True)
    # This account's stored payment method. Never used for another account's orders; ops may
    # set the same id on another account in the admin to share it explicitly.
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    # The account's invoice-address contact: a child of the commercial partner in Odoo.
    odoo_invoice_partner_id = models.PositiveIntegerField(null=True, blank=True, unique=True)
    # Lago's customer ``timezone`` (IANA name; blank = BILLING_TIMEZONE): the calendar of
    # this account's new subscriptions' billing windows.
    # A database default too: bulk loaders that COPY explicit columns need not know it.
    timezone = models.CharField(max_length=64, blank=True, default="", db_default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "external_id"], name="account_link_unique_per_service"),
            models.UniqueConstraint(fields=["service", "sequential_id"], name="account_link_sequential_per_service"),
            models.CheckConstraint(
                condition=Q(currency__isnull=True) | Q(currency__regex=CURRENCY_CODE_CHECK),
                name="account_link_currency_is_iso_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_id}"


class AccountMetadata(models.Model):
    """Lago's customer metadata item, on the service's own account."""

    # Lago's limits (Metadata::CustomerMetadata).
    MAX_PER_ACCOUNT = 5
    KEY_MAX_LENGTH = 20
    VALUE_MAX_LENGTH = 100

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(AccountLink, on_delete=models.CASCADE, related_name="metadata")
    key = models.CharField(max_length=KEY_MAX_LENGTH)
    value = models.CharField(max_length=VALUE_MAX_LENGTH)
    display_in_invoice = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="account_metadata_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.account}:{self.key}"


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


def document_number_prefix(service: Service) -> str:
    """Lago's organization ``document_number_prefix``: 3 letters of the name and the id's last 4."""
    letters = "".join(ch for ch in service.name.upper() if ch.isalnum())[:3] or service.code[:3].upper()
    return f"{letters}-{service.pk % 10000:04d}"
