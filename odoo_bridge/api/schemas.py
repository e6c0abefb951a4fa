"""OpenAPI of the invoice object mirrored from Odoo (``odoo_bridge.renderers``)."""
from __future__ import annotations

from billing_kit import examples
from billing_kit.wire import array, component, obj, ref

FEE = component("Fee", obj({
    "lago_id": "string", "lago_charge_id": "string?", "lago_invoice_id": "string?",
    "lago_subscription_id": "string?", "external_subscription_id": "string?", "lago_customer_id": "string?",
    "item": obj({"type": "string", "code": "string", "name": "string", "invoice_display_name": "string",
                 "lago_item_id": "string?", "item_type": "string"}),
    "pay_in_advance": "boolean", "invoiceable": "boolean", "amount_cents": "integer", "amount_currency": "currency",
    "precise_amount": "decimal", "taxes_amount_cents": "integer", "total_amount_cents": "integer",
    "total_amount_currency": "currency", "taxes_rate": "number",
    "sub_total_excluding_taxes_amount_cents": "integer", "sub_total_excluding_taxes_precise_amount_cents": "decimal",
    "units": "decimal", "total_aggregated_units": "decimal", "precise_unit_amount": "decimal",
    "applied_taxes": array(obj({
        "lago_id": "string", "lago_fee_id": "string", "lago_tax_id": "string", "tax_name": "string",
        "tax_code": "string", "tax_rate": "number", "tax_description": "string?", "amount_cents": "integer",
        "amount_currency": "currency", "created_at": "datetime"})),
    "events_count": "integer?", "description": "string?", "payment_status": "string", "from_date": "datetime?", "to_date": "datetime?",
    "created_at": "datetime",
}))

_CENTS = ("fees_amount_cents", "taxes_amount_cents", "progressive_billing_credit_amount_cents",
          "coupons_amount_cents", "credit_notes_amount_cents", "sub_total_excluding_taxes_amount_cents",
          "sub_total_including_taxes_amount_cents", "total_amount_cents", "total_due_amount_cents",
          "total_paid_amount_cents", "total_offsetted_credit_note_amount_cents", "prepaid_credit_amount_cents",
          "prepaid_granted_credit_amount_cents", "prepaid_purchased_credit_amount_cents")

INVOICE = component("Invoice", obj({
    "lago_id": "string", "billing_entity_code": "string", "sequential_id": "integer?", "number": "string",
    "purchase_order_number": "string?", "issuing_date": "date?", "payment_due_date": "date?",
    "net_payment_term": "integer", "invoice_type": "string", "status": "string", "payment_status": "string",
    "payment_dispute_lost_at": "datetime?", "payment_overdue": "boolean", "currency": "currency",
    **{name: "integer" for name in _CENTS},
    "file_url": "string?", "xml_url": "string?", "web_url": "string?", "version_number": "integer",
    "self_billed": "boolean", "created_at": "datetime", "updated_at": "datetime", "voided_at": "datetime?",
    "customer": ref("Customer", nullable=True), "subscriptions": array(ref("Subscription")),
    "billing_periods": "array", "fees": array(FEE), "credits": array(ref("InvoiceCredit")),
    "metadata": array(obj({"lago_id": "string?", "key": "string", "value": "string", "created_at": "datetime"})),
    "applied_taxes": array(obj({
        "lago_id": "string", "lago_invoice_id": "string", "lago_tax_id": "string", "tax_name": "string",
        "tax_code": "string", "tax_rate": "number", "tax_description": "string?", "amount_cents": "integer",
        "amount_currency": "currency", "fees_amount_cents": "integer", "created_at": "datetime"})),
    "error_details": "array", "applied_invoice_custom_sections": "array",
}, description="An invoice of Odoo's, mirrored (docs/odoo.md); a one-off invoice Odoo has not posted yet is "
               "answered as a draft (no number, no taxes yet)."))

CREDIT_NOTE = component("CreditNote", obj({
    "lago_id": "string", "billing_entity_code": "string", "sequential_id": "integer?", "number": "string",
    "lago_invoice_id": "string?", "invoice_number": "string?", "purchase_order_number": "string?",
    "issuing_date": "date?", "credit_status": {"type": "string", "enum": ["available", "consumed", "voided"],
                                               "nullable": True},
    "refund_status": "string?", "reason": "string", "description": "string?", "currency": "currency",
    "total_amount_cents": "integer", "taxes_amount_cents": "integer", "taxes_rate": "number",
    "sub_total_excluding_taxes_amount_cents": "integer", "balance_amount_cents": "integer",
    "credit_amount_cents": "integer", "refund_amount_cents": "integer", "offset_amount_cents": "integer",
    "coupons_adjustment_amount_cents": "integer", "created_at": "datetime", "updated_at": "datetime",
    "voided_at": "datetime?", "file_url": "string?", "self_billed": "boolean", "error_details": "array",
    "customer": ref("Customer", nullable=True),
    "items": array(obj({"lago_id": "string", "amount_cents": "integer", "amount_currency": "currency",
                        "fee": FEE})),
    "applied_taxes": array(obj({
        "lago_id": "string", "lago_credit_note_id": "string", "lago_tax_id": "string", "tax_name": "string",
        "tax_code": "string", "tax_rate": "number", "tax_description": "string?", "amount_cents": "integer",
        "amount_currency": "currency", "base_amount_cents": "integer", "created_at": "datetime"})),
    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
}, description="An Odoo refund (out_refund), mirrored (docs/odoo.md)."))

CREDIT_NOTE_ESTIMATE = obj({"estimated_credit_note": obj({
    "lago_invoice_id": "string", "invoice_number": "string", "currency": "currency",
    "taxes_amount_cents": "integer", "precise_taxes_amount_cents": "number", "taxes_rate": "number",
    "sub_total_excluding_taxes_amount_cents": "integer", "max_creditable_amount_cents": "integer",
    "max_refundable_amount_cents": "integer", "max_offsettable_amount_cents": "integer",
    "coupons_adjustment_amount_cents": "integer", "precise_coupons_adjustment_amount_cents": "number",
    "items": array(obj({"amount_cents": "integer", "lago_fee_id": "string"})),
    "applied_taxes": array(obj({"lago_tax_id": "string", "tax_name": "string", "tax_code": "string",
                                "tax_rate": "number", "tax_description": "string?", "base_amount_cents": "integer",
                                "amount_cents": "integer", "amount_currency": "currency"})),
})})

INVOICE_PAYMENT_DETAILS = obj({"invoice_payment_details": obj({
    "lago_customer_id": "string?", "lago_invoice_id": "string", "external_customer_id": "string?",
    "payment_provider": {"type": "string", "enum": ["odoo"]}, "payment_url": "string"})})

CUSTOMER_PORTAL_URL = obj({"customer": obj({"portal_url": "string"})})

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("invoice", number="NEX-0001-001-001", invoice_type="subscription", status="finalized",
                payment_status="pending", currency="CAD", fees_amount_cents=10000, taxes_amount_cents=1300,
                total_amount_cents=11300, file_url=None)
examples.values("fee", units="12.5", amount_cents=63, taxes_rate=13.0)
