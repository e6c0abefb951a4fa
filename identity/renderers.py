"""Lago JSON for customers. Also used for ``customer.*`` webhook payloads."""
from __future__ import annotations

from typing import Any

from django.conf import settings

from billing_kit.formatting import iso_seconds
from identity.models import AccountLink, Service, document_number_prefix


def _or_none(value: str) -> str | None:
    return value or None


def render_metadata(link: AccountLink) -> list[dict[str, Any]]:
    return [{"lago_id": str(item.pk), "key": item.key, "value": item.value,
             "display_in_invoice": item.display_in_invoice, "created_at": iso_seconds(item.created_at)}
            for item in link.metadata.all()]


def render_customer(link: AccountLink) -> dict[str, Any]:
    """The customer as the calling service sees it: its own account only. ``lago_id`` is the
    AccountLink's id, never the unified Customer's, and every profile field is the account's
    own, so nothing another service set (or that two accounts share) is ever shown."""
    return {
        "lago_id": str(link.id),
        "external_id": link.external_id,
        "sequential_id": link.sequential_id,
        "slug": _or_none(link.slug),
        "account_type": "customer",
        "customer_type": _or_none(link.customer_type),
        "name": _or_none(link.name),
        "firstname": _or_none(link.firstname),
        "lastname": _or_none(link.lastname),
        "legal_name": _or_none(link.legal_name),
        "legal_number": _or_none(link.legal_number),
        "email": _or_none(link.external_email),
        "currency": link.currency,
        "address_line1": _or_none(link.address_line1),
        "address_line2": _or_none(link.address_line2),
        "city": _or_none(link.city),
        "zipcode": _or_none(link.zipcode),
        "state": _or_none(link.state),
        "country": _or_none(link.country),
        "phone": _or_none(link.phone),
        "url": _or_none(link.url),
        "logo_url": None,
        "tax_identification_number": _or_none(link.tax_identification_number),
        "timezone": link.timezone or None,
        "applicable_timezone": link.timezone or settings.BILLING_TIMEZONE,
        "net_payment_term": link.net_payment_term,
        "finalize_zero_amount_invoice": "inherit",
        "billing_entity_code": None,
        "external_salesforce_id": None,
        "skip_invoice_custom_sections": False,
        "billing_configuration": {
            "invoice_grace_period": link.invoice_grace_period,
            "payment_provider": None,
            "payment_provider_code": None,
            "provider_customer_id": None,
            "sync": None,
            "sync_with_provider": None,
            "document_locale": _or_none(link.document_locale),
            "provider_payment_methods": None,
            "subscription_invoice_issuing_date_anchor": None,
            "subscription_invoice_issuing_date_adjustment": None,
        },
        "shipping_address": {
            "address_line1": _or_none(link.shipping_address_line1),
            "address_line2": _or_none(link.shipping_address_line2),
            "city": _or_none(link.shipping_city),
            "zipcode": _or_none(link.shipping_zipcode),
            "state": _or_none(link.shipping_state),
            "country": _or_none(link.shipping_country),
        },
        "metadata": render_metadata(link),
        "taxes": [],
        "integration_customers": [],
        "applicable_invoice_custom_sections": [],
        "error_details": [],
        "created_at": iso_seconds(link.created_at),
        "updated_at": iso_seconds(link.updated_at),
        "deleted_at": iso_seconds(link.deleted_at),
    }


def organization_grace_days(service: Service) -> int:
    """The service's invoice grace period; unset, the deployment default in whole days (Lago's
    field is an integer of days; RATING_GRACE_SECONDS is usually 0 or below a day)."""
    if service.invoice_grace_period is not None:
        return service.invoice_grace_period
    return settings.RATING_GRACE_SECONDS // 86400


def render_organization(service: Service) -> dict[str, Any]:
    return {
        "lago_id": str(service.lago_id),
        "name": service.name,
        "code": service.code,
        "default_currency": service.default_currency,
        "created_at": iso_seconds(service.created_at),
        # Lago's organization fields; invoicing settings are Odoo's, so these are fixed.
        "document_numbering": "per_customer",
        "document_number_prefix": document_number_prefix(service),
        "email_settings": [],
        "billing_configuration": {"invoice_footer": None, "invoice_grace_period": organization_grace_days(service),
                                  "document_locale": "en"},
        "timezone": settings.BILLING_TIMEZONE,
        "taxes": [],
    }
