"""Writes of customers: upsert the service's own account (``external_id``), folded by email into one unified Customer."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from billing_kit.retries import atomic_with_retries
from billing_kit.updates import model_update
from identity.models import (
    AccountLink, AccountMetadata, Customer, IdempotencyKey, Service, document_number_prefix,
    invoice_grace_period_changed,
)
from identity.renderers import render_customer
# The one sanctioned upward import of the dependency order: the webhook outbox (a port).
from webhooks.services import WebhookType, record_event

# Request fields written to the service's own account. Only these are ever written (no mass assignment).
ACCOUNT_PROFILE_FIELDS = (
    "name", "firstname", "lastname", "legal_name", "legal_number", "customer_type", "currency",
    "address_line1", "address_line2", "city", "zipcode", "state", "country", "phone", "url",
    "tax_identification_number", "net_payment_term",
)
# Nullable columns keep None; text columns store "" for "not set".
NULLABLE_PROFILE_FIELDS = frozenset({"currency", "net_payment_term", "invoice_grace_period"})
BILLING_CONFIGURATION_FIELDS = ("invoice_grace_period", "document_locale")
SHIPPING_ADDRESS_FIELDS = ("address_line1", "address_line2", "city", "zipcode", "state", "country")


@dataclass(frozen=True)
class CustomerUpsert:
    link: AccountLink
    created: bool
    changed: bool


def _find_customer_by_email(email: str) -> Customer | None:
    return Customer.objects.filter(email__iexact=email).first() if email else None


def _column_value(field: str, value: Any) -> Any:
    if value in (None, "") and field in NULLABLE_PROFILE_FIELDS:
        return None
    return value


def _profile_values(data: dict[str, Any]) -> dict[str, Any]:
    """Column values of the account from the request; a field absent or null is left as it is."""
    values = {field: _column_value(field, data[field]) for field in ACCOUNT_PROFILE_FIELDS
              if data.get(field) is not None}
    billing = data.get("billing_configuration") or {}
    values.update({field: _column_value(field, billing[field]) for field in BILLING_CONFIGURATION_FIELDS
                   if billing.get(field) is not None})
    shipping = data.get("shipping_address") or {}
    values.update({f"shipping_{field}": shipping[field] for field in SHIPPING_ADDRESS_FIELDS
                   if shipping.get(field) is not None})
    return values


@transaction.atomic
def allocate_account_number(*, service: Service) -> tuple[int, str]:
    """(sequential_id, slug) of the service's next account, as Lago numbers customers per organization."""
    # Lock the service row: numbering is per service and concurrent creations must not share a number.
    Service.objects.select_for_update().filter(pk=service.pk).exists()
    last = AccountLink.objects.filter(service=service).aggregate(last=Max("sequential_id"))["last"]
    sequential_id = (last or 0) + 1
    return sequential_id, f"{document_number_prefix(service)}-{sequential_id:03d}"


def upsert_customer(*, service: Service, data: dict[str, Any]) -> CustomerUpsert:
    """Create or update the service's account ``data["external_id"]``.

    A new account joins the unified Customer with the same email (case-insensitive),
    so one real client has one Customer (one Odoo commercial partner) across services;
    otherwise a Customer is created. That join is internal: the account's profile is its
    own and a later email change never moves it to another Customer. Re-run when a
    concurrent request created the same account or email, or deadlocked with this one.
    """
    return atomic_with_retries(lambda: _upsert_customer(service=service, data=data))


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
            customer = Customer.objects.create(email=email)
        sequential_id, slug = allocate_account_number(service=service)
        link = AccountLink.objects.create(
            service=service, external_id=external_id, external_email=email, customer=customer,
            sequential_id=sequential_id, slug=slug, timezone=data.get("timezone") or "", **profile,
        )
    else:
        if link.deleted_at is not None:
            link.deleted_at = None
            changed = True
        # Lago: a sent ``timezone`` (null included) replaces the account's; an absent one keeps it.
        if "timezone" in data and (data["timezone"] or "") != link.timezone:
            link.timezone = data["timezone"] or ""
            changed = True
        if email and email.lower() != (link.external_email or "").lower():
            link.external_email = email
            changed = True
            customer = link.customer
            if not customer.email and _find_customer_by_email(email) is None:
                # A client known without an email gets it; one that already belongs to
                # another client never moves the account there (the account stays its own).
                customer.email = email
                customer.save(update_fields=["email", "updated_at"])
        _, updated = model_update(instance=link, data=profile, save=False)
        changed = changed or bool(updated)
        if changed:
            link.save()
        if "invoice_grace_period" in updated:
            customer_grace_changed(link=link)
    if "metadata" in data and data["metadata"] is not None:
        changed = _replace_metadata(link=link, items=data["metadata"]) or changed
    if changed:
        record_event(
            service=service,
            webhook_type=WebhookType.CUSTOMER_CREATED if created else WebhookType.CUSTOMER_UPDATED,
            object_type="customer", payload=render_customer(link),
        )
    return CustomerUpsert(link=link, created=created, changed=changed)


def _replace_metadata(*, link: AccountLink, items: list[dict[str, Any]]) -> bool:
    """Lago's ``Customers::Metadata::UpdateService``: an item with the id of one of the account's
    items updates it, any other item is created, and the account's items not sent are deleted.
    Ids are looked up in this account only. Returns whether anything changed."""
    existing = {str(item.pk): item for item in link.metadata.all()}
    updates = [(existing.get(str(item.get("id") or "")), item) for item in items]
    sent = {str(current.pk) for current, _ in updates if current is not None}
    changed = False
    # Deletions, then updates, then creations: a key may move from one item to another.
    stale = [pk for pk in existing if pk not in sent]
    if stale:
        AccountMetadata.objects.filter(pk__in=stale).delete()
        changed = True
    for current, item in sorted(updates, key=lambda pair: pair[0] is None):
        values = {"key": item["key"], "value": item["value"],
                  "display_in_invoice": bool(item.get("display_in_invoice"))}
        if current is None:
            AccountMetadata.objects.create(account=link, **values)
            changed = True
        else:
            _, updated = model_update(instance=current, data=values)
            changed = changed or bool(updated)
    return changed


def assign_currency(*, link: AccountLink, currency: str) -> None:
    """Lago gives a customer without a currency the currency of its first plan."""
    if link.currency is None:
        link.currency = currency
        link.save(update_fields=["currency", "updated_at"])


@transaction.atomic
def delete_customer(*, link: AccountLink) -> AccountLink:
    """Soft delete: the account disappears from the API; the unified Customer and its
    history stay (other services may still bill the same client)."""
    link.deleted_at = timezone.now()
    link.save(update_fields=["deleted_at", "updated_at"])
    return link


@transaction.atomic
def update_organization(*, service: Service, data: dict[str, Any]) -> Service:
    """Lago's organization is the calling service: its name, default currency and invoice grace
    period (``billing_configuration``; null resets it to the deployment default)."""
    values = {field: data[field] for field in ("name", "default_currency") if field in data}
    billing = data.get("billing_configuration") or {}
    if "invoice_grace_period" in billing:
        values["invoice_grace_period"] = billing["invoice_grace_period"]
    service = Service.objects.select_for_update().get(pk=service.pk)
    service, updated = model_update(instance=service, data=values,
                                    fields=("name", "default_currency", "invoice_grace_period"))
    if "invoice_grace_period" in updated:
        organization_grace_changed(service=service)
    return service


def customer_grace_changed(*, link: AccountLink) -> None:
    """Tell metering, in the caller's transaction, that the account's own grace period changed."""
    invoice_grace_period_changed.send(sender=AccountLink, service=link.service, link=link)


def organization_grace_changed(*, service: Service) -> None:
    """Tell metering, in the caller's transaction, that the service's grace period changed
    (the API's PUT and the admin's save)."""
    invoice_grace_period_changed.send(sender=Service, service=service, link=None)


def purge_idempotency_keys(*, now=None) -> int:
    """Delete Idempotency-Key records older than ``IDEMPOTENCY_KEY_TTL_HOURS``."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
