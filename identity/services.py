"""Writes of customers: upsert by the service's own ``external_id`` onto one unified Customer."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_kit.updates import model_update
from identity.models import AccountLink, Customer, IdempotencyKey, Service
from identity.renderers import render_customer
# The one sanctioned upward import of the dependency order: the webhook outbox (a port).
from webhooks.services import WebhookType, record_event

# Request field -> Customer column. Only these are ever written (no mass assignment).
CUSTOMER_PROFILE_FIELDS = {
    "name": "name",
    "legal_name": "company",
    "currency": "currency",
    "address_line1": "address_line1",
    "address_line2": "address_line2",
    "city": "city",
    "zipcode": "zipcode",
    "state": "state",
    "country": "country",
    "phone": "phone",
    "tax_identification_number": "tax_identification_number",
}


@dataclass(frozen=True)
class CustomerUpsert:
    link: AccountLink
    created: bool
    changed: bool


def _find_customer_by_email(email: str) -> Customer | None:
    return Customer.objects.filter(email__iexact=email).first() if email else None


def _profile_values(data: dict[str, Any]) -> dict[str, Any]:
    values = {column: data[field] for field, column in CUSTOMER_PROFILE_FIELDS.items()
              if data.get(field) is not None}
    if "name" not in values and (data.get("firstname") or data.get("lastname")):
        values["name"] = " ".join(p for p in (data.get("firstname"), data.get("lastname")) if p)
    return values


def upsert_customer(*, service: Service, data: dict[str, Any]) -> CustomerUpsert:
    """Create or update the service's account ``data["external_id"]``.

    A new account joins the unified Customer with the same email (case-insensitive),
    so one real client has one Customer across services; otherwise a Customer is
    created. Retried (up to twice) when a concurrent request created the same account or email.
    """
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _upsert_customer(service=service, data=data)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _upsert_customer(*, service: Service, data: dict[str, Any]) -> CustomerUpsert:
    external_id = data["external_id"]
    email = (data.get("email") or "").strip()
    profile = _profile_values(data)
    link = (AccountLink.objects.select_for_update().select_related("customer")
            .filter(service=service, external_id=external_id).first())
    created = link is None
    changed = created
    if link is None:
        customer = _find_customer_by_email(email)
        if customer is None:
            customer = Customer.objects.create(email=email, **profile)
        link = AccountLink.objects.create(
            service=service, external_id=external_id, external_email=email, customer=customer,
            timezone=data.get("timezone") or "",
        )
    else:
        if link.deleted_at is not None:
            link.deleted_at = None
            changed = True
        customer = link.customer
        # Lago: a sent ``timezone`` (null included) replaces the account's; an absent one keeps it.
        if "timezone" in data and (data["timezone"] or "") != link.timezone:
            link.timezone = data["timezone"] or ""
            changed = True
        if email and email.lower() != (link.external_email or "").lower():
            link.external_email = email
            changed = True
            owner = _find_customer_by_email(email)
            if owner is not None and owner.pk != customer.pk:
                # The account's new email belongs to a known client: it is that client.
                link.customer = customer = owner
            elif not customer.email:
                profile["email"] = email
        _, updated = model_update(instance=customer, data=profile)
        changed = changed or bool(updated)
        if changed:
            link.save()
    if changed:
        record_event(
            service=service,
            webhook_type=WebhookType.CUSTOMER_CREATED if created else WebhookType.CUSTOMER_UPDATED,
            object_type="customer", payload=render_customer(link),
        )
    return CustomerUpsert(link=link, created=created, changed=changed)


@transaction.atomic
def delete_customer(*, link: AccountLink) -> AccountLink:
    """Soft delete: the account disappears from the API; the unified Customer and its
    history stay (other services may still bill the same client)."""
    link.deleted_at = timezone.now()
    link.save(update_fields=["deleted_at", "updated_at"])
    return link


def update_organization(*, service: Service, data: dict[str, Any]) -> Service:
    """Lago's organization is the calling service: its name and default currency."""
    service, _ = model_update(instance=service, data=data, fields=("name", "default_currency"))
    return service


def purge_idempotency_keys(*, now=None) -> int:
    """Delete Idempotency-Key records older than ``IDEMPOTENCY_KEY_TTL_HOURS``."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
