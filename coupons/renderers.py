"""Lago's coupon and applied coupon objects (lago-python-client 1.55.0 ``CouponResponse``,
``AppliedCouponResponse``) and the ``credits`` item of an invoice."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_kit.formatting import iso_seconds, to_cents

from .models import AppliedCoupon, Coupon, CouponDiscount, CouponType, Frequency


def _rate(value: Decimal | None) -> str | None:
    """Lago renders the rate as a decimal string ("12.5")."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def render_coupon(coupon: Coupon) -> dict[str, Any]:
    fixed = coupon.coupon_type == CouponType.FIXED_AMOUNT
    return {
        "lago_id": str(coupon.pk),
        "name": coupon.name,
        "code": coupon.code,
        "description": coupon.description or None,
        "coupon_type": coupon.coupon_type,
        "amount_cents": to_cents(coupon.amount, coupon.amount_currency) if fixed and coupon.amount is not None
        else None,
        "amount_currency": coupon.amount_currency or None,
        "percentage_rate": None if fixed else _rate(coupon.percentage_rate),
        "frequency": coupon.frequency,
        "frequency_duration": coupon.frequency_duration,
        "reusable": coupon.reusable,
        "limited_plans": False,
        "plan_codes": [],
        "limited_billable_metrics": False,
        "billable_metric_codes": [],
        "created_at": iso_seconds(coupon.created_at),
        "expiration": coupon.expiration,
        "expiration_at": iso_seconds(coupon.expiration_at),
        "terminated_at": iso_seconds(coupon.terminated_at),
    }


def render_credit(discount: CouponDiscount, *, invoice: dict[str, Any] | None = None) -> dict[str, Any]:
    """One coupon credit of an invoice (Lago ``credits[]``), ``invoice``: ``{lago_id, payment_status}``."""
    applied = discount.applied_coupon
    return {
        "lago_id": str(discount.pk),
        "amount_cents": to_cents(discount.amount, discount.currency),
        "amount_currency": discount.currency,
        "before_taxes": True,
        "item": {"lago_item_id": str(applied.pk), "type": "coupon", "code": applied.coupon.code,
                 "name": applied.coupon.name, "invoice_display_name": applied.coupon.name},
        "invoice": invoice,
    }


def render_applied_coupon(applied: AppliedCoupon) -> dict[str, Any]:
    coupon = applied.coupon
    fixed = coupon.coupon_type == CouponType.FIXED_AMOUNT
    discounts = list(applied.discounts.all())
    remaining = None
    if fixed and applied.amount is not None:
        remaining = applied.amount
        if applied.frequency == Frequency.ONCE:
            remaining = max(applied.amount - sum((d.amount for d in discounts), Decimal(0)), Decimal(0))
    currency = applied.amount_currency or None
    return {
        "lago_id": str(applied.pk),
        "lago_coupon_id": str(coupon.pk),
        "coupon_code": coupon.code,
        "coupon_name": coupon.name,
        "lago_customer_id": str(applied.account_link_id),
        "external_customer_id": applied.account_link.external_id,
        "status": applied.status,
        "amount_cents": to_cents(applied.amount, currency) if fixed and applied.amount is not None else None,
        "amount_cents_remaining": to_cents(remaining, currency) if remaining is not None else None,
        "amount_currency": currency,
        "percentage_rate": None if fixed else _rate(applied.percentage_rate),
        "frequency": applied.frequency,
        "frequency_duration": applied.frequency_duration,
        "frequency_duration_remaining": applied.frequency_duration_remaining,
        "expiration_at": iso_seconds(coupon.expiration_at),
        "created_at": iso_seconds(applied.created_at),
        "terminated_at": iso_seconds(applied.terminated_at),
        "credits": [render_credit(d) for d in discounts],
    }
