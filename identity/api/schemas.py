"""OpenAPI of identity's wire objects (as ``identity.renderers`` writes them)."""
from __future__ import annotations

from typing import Any

from billing_kit import examples
from billing_kit.wire import array, component, obj

ADDRESS: dict[str, Any] = {"address_line1": "string?", "address_line2": "string?", "city": "string?", "zipcode": "string?",
           "state": "string?", "country": "string?"}

CUSTOMER = component("Customer", obj({
    "lago_id": "string", "external_id": "string", "sequential_id": "integer?", "slug": "string?",
    "account_type": "string", "customer_type": {"type": "string", "enum": ["company", "individual"], "nullable": True},
    "name": "string?", "firstname": "string?", "lastname": "string?", "legal_name": "string?",
    "legal_number": "string?", "email": "string?", "currency": "currency?", **ADDRESS, "phone": "string?",
    "url": "string?", "logo_url": "string?", "tax_identification_number": "string?", "timezone": "string?",
    "applicable_timezone": "string", "net_payment_term": "integer?", "finalize_zero_amount_invoice": "string",
    "billing_entity_code": "string?", "external_salesforce_id": "string?", "skip_invoice_custom_sections": "boolean",
    "billing_configuration": obj({
        "invoice_grace_period": "integer?", "payment_provider": "string?", "payment_provider_code": "string?",
        "provider_customer_id": "string?", "sync": "boolean?", "sync_with_provider": "boolean?",
        "document_locale": "string?", "provider_payment_methods": "array?",
        "subscription_invoice_issuing_date_anchor": "string?",
        "subscription_invoice_issuing_date_adjustment": "string?"}),
    "shipping_address": obj(ADDRESS),
    "metadata": array(obj({"lago_id": "string?", "key": "string", "value": "string",
                           "display_in_invoice": "boolean", "created_at": "datetime"})),
    "taxes": "array", "integration_customers": "array", "applicable_invoice_custom_sections": "array",
    "error_details": "array", "created_at": "datetime", "updated_at": "datetime", "deleted_at": "datetime?",
}, description="Lago's customer: the calling service's account (docs/api.md)."))

ORGANIZATION = component("Organization", obj({
    "lago_id": "uuid", "name": "string", "code": "string", "default_currency": "currency", "created_at": "datetime",
    "document_numbering": {"type": "string", "enum": ["per_customer", "per_organization"]},
    "document_number_prefix": "string", "email_settings": "array",
    "billing_configuration": obj({"invoice_footer": "string?", "invoice_grace_period": "integer",
                                  "document_locale": "string"}),
    "timezone": "string", "taxes": "array",
}, description="Lago's organization: the calling service."))

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("customer", external_id="hooli_1234", name="Hooli", legal_name="Hooli Inc.",
                legal_number="HOO-1234", firstname="Gavin", lastname="Belson", url="https://hooli.test",
                tax_identification_number="CA123456789", customer_type="company", account_type="customer",
                sequential_id=1, slug="HOO-0001", net_payment_term=30, finalize_zero_amount_invoice="inherit")
examples.values("organization", name="NexaCloud", code="nexacloud", document_number_prefix="NEX",
                document_numbering="per_customer")
