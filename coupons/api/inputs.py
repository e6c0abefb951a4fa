"""Explicit input schemas of coupons and applied coupons (Lago's fields; no mass assignment).

Plan and billable-metric limitations (``applies_to``, ``plan_codes``, ``limited_plans``…)
are not built: a non-empty value is refused with ``not_supported``.
"""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing_kit.errors import ErrorCode
from coupons.models import CouponType, Expiration, Frequency

COUPON_TYPES = [c for c, _ in CouponType.choices]
FREQUENCIES = [c for c, _ in Frequency.choices]
EXPIRATIONS = [c for c, _ in Expiration.choices]


def _refuse_limits(serializer: serializers.Serializer, value: Any) -> Any:
    """A plan or metric limitation (``applies_to``): not built, so refused unless empty."""
    if isinstance(value, dict):
        if any(value.get(k) for k in value):
            raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
        return value
    if value:
        raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
    return value


def _rate_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=9, decimal_places=4, min_value=0, max_value=10**5, **kwargs)


class CouponInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    coupon_type = serializers.ChoiceField(COUPON_TYPES)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**13, required=False, allow_null=True)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    percentage_rate = _rate_field(required=False, allow_null=True)
    frequency = serializers.ChoiceField(FREQUENCIES, required=False, allow_null=True)
    frequency_duration = serializers.IntegerField(min_value=0, max_value=10**6, required=False, allow_null=True)
    reusable = serializers.BooleanField(required=False, allow_null=True)
    expiration = serializers.ChoiceField(EXPIRATIONS)
    expiration_at = serializers.DateTimeField(required=False, allow_null=True)
    applies_to = serializers.JSONField(required=False, allow_null=True)
    limited_plans = serializers.BooleanField(required=False, allow_null=True)
    plan_codes = serializers.JSONField(required=False, allow_null=True)
    limited_billable_metrics = serializers.BooleanField(required=False, allow_null=True)
    billable_metric_codes = serializers.JSONField(required=False, allow_null=True)

    validate_applies_to = validate_limited_plans = validate_plan_codes = _refuse_limits
    validate_limited_billable_metrics = validate_billable_metric_codes = _refuse_limits


class CouponUpdateInput(CouponInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    coupon_type = serializers.ChoiceField(COUPON_TYPES, required=False)
    expiration = serializers.ChoiceField(EXPIRATIONS, required=False)


class AppliedCouponInput(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    coupon_code = serializers.CharField(max_length=255)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**13, required=False, allow_null=True)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    percentage_rate = _rate_field(required=False, allow_null=True)
    frequency = serializers.ChoiceField(FREQUENCIES, required=False, allow_null=True)
    frequency_duration = serializers.IntegerField(min_value=0, max_value=10**6, required=False, allow_null=True)
