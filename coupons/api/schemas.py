"""OpenAPI of the coupon, applied coupon and invoice credit objects (as ``coupons.renderers`` writes them)."""
from __future__ import annotations

from billing_kit import examples
from billing_kit.wire import array, component, obj

from coupons.models import AppliedCouponStatus, CouponType, Expiration, Frequency

_FREQUENCY = {"type": "string", "enum": Frequency.values}

COUPON = component("Coupon", obj({
    "lago_id": "string", "name": "string", "code": "string", "description": "string?",
    "coupon_type": {"type": "string", "enum": CouponType.values}, "amount_cents": "integer?",
    "amount_currency": "currency?", "percentage_rate": "decimal?", "frequency": _FREQUENCY,
    "frequency_duration": "integer?", "reusable": "boolean", "limited_plans": "boolean", "plan_codes": "array",
    "limited_billable_metrics": "boolean", "billable_metric_codes": "array", "created_at": "datetime",
    "expiration": {"type": "string", "enum": Expiration.values}, "expiration_at": "datetime?",
    "terminated_at": "datetime?",
}))

INVOICE_CREDIT = component("InvoiceCredit", obj({
    "lago_id": "string", "amount_cents": "integer", "amount_currency": "currency", "before_taxes": "boolean",
    "item": obj({"lago_item_id": "string", "type": "string", "code": "string", "name": "string",
                 "invoice_display_name": "string"}),
    "invoice": obj({"lago_id": "string", "payment_status": "string"}, nullable=True),
}, description="A coupon's discount on one invoice (Lago's `credits[]` item; `invoice` is null inside an "
               "applied coupon)."))

APPLIED_COUPON = component("AppliedCoupon", obj({
    "lago_id": "string", "lago_coupon_id": "string", "coupon_code": "string", "coupon_name": "string",
    "lago_customer_id": "string", "external_customer_id": "string",
    "status": {"type": "string", "enum": AppliedCouponStatus.values}, "amount_cents": "integer?",
    "amount_cents_remaining": "integer?", "amount_currency": "currency?", "percentage_rate": "decimal?",
    "frequency": _FREQUENCY, "frequency_duration": "integer?", "frequency_duration_remaining": "integer?",
    "expiration_at": "datetime?", "created_at": "datetime", "terminated_at": "datetime?",
    "credits": array(INVOICE_CREDIT),
}))

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("coupon", name="Welcome", code="welcome", coupon_type="fixed_amount", amount_cents=1000,
                percentage_rate=None, frequency="once", frequency_duration=None, reusable=False,
                expiration="no_expiration", expiration_at=None)
examples.values("applied_coupon", coupon_code="welcome", coupon_name="Welcome", status="active",
                amount_cents=1000, amount_cents_remaining=1000, percentage_rate=None, frequency="once",
                frequency_duration=None, frequency_duration_remaining=None, expiration_at=None)
