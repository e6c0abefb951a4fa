"""Lago JSON for customers. Also used for ``customer.*`` webhook payloads."""
from __future__ import annotations

from typing import Any

from billing_kit.formatting import iso_seconds
from identity.models import AccountLink, Service


def render_customer(link: AccountLink) -> dict[str, Any]:
    """The customer as the calling service sees it: its own account (``lago_id`` is the
    AccountLink's id, never the unified Customer's, so services cannot correlate ids)."""
    customer = link.customer
    updated_at = max(link.updated_at, customer.updated_at)
    return {
        "lago_id": str(link.id),
        "external_id": link.external_id,
        "sequential_id": None,
        "slug": None,
        "account_type": "customer",
        "customer_type": "company" if customer.company else None,
        "name": customer.name or None,
        "firstname": None,
        "lastname": None,
        "legal_name": customer.company or None,
        "legal_number": None,
        "email": link.external_email or customer.email or None,
        "currency": customer.currency,
        "address_line1": customer.address_line1 or None,
        "address_line2": customer.address_line2 or None,
        "city": customer.city or None,
        "zipcode": customer.zipcode or None,
        "state": customer.state or None,
        "country": customer.country or None,
        "phone": customer.phone or None,
        "url": None,
        "logo_url": None,
        "tax_identification_number": customer.tax_identification_number or None,
        "timezone": None,
        "applicable_timezone": "UTC",
        "net_payment_term": None,
        "finalize_zero_amount_invoice": "inherit",
        "billing_entity_code": None,
        "external_salesforce_id": None,
        "skip_invoice_custom_sections": False,
        "billing_configuration": {
            "invoice_grace_period": None,
            "payment_provider": None,
            "payment_provider_code": None,
            "provider_customer_id": None,
            "sync": None,
            "sync_with_provider": None,
            "document_locale": None,
            "provider_payment_methods": None,
            "subscription_invoice_issuing_date_anchor": None,
            "subscription_invoice_issuing_date_adjustment": None,
        },
        "shipping_address": {
            "address_line1": None, "address_line2": None, "city": None,
            "zipcode": None, "state": None, "country": None,
        },
        "metadata": [],
        "taxes": [],
        "integration_customers": [],
        "applicable_invoice_custom_sections": [],
        "error_details": [],
        "created_at": iso_seconds(link.created_at),
        "updated_at": iso_seconds(updated_at),
        "deleted_at": iso_seconds(link.deleted_at),
    }


def render_organization(service: Service) -> dict[str, Any]:
    return {
        "lago_id": str(service.lago_id),
        "name": service.name,
        "code": service.code,
        "default_currency": service.default_currency,
        "created_at": iso_seconds(service.created_at),
    }
