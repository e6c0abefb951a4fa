"""Explicit input schemas of metrics, plans and subscriptions (no mass assignment).

Lago fields that are not modelled here are accepted and ignored, as Lago ignores
unpermitted parameters; features that would change billing if ignored are refused.
"""
from typing import Any

from rest_framework import serializers

from billing_kit.errors import ErrorCode
from metering.models import AggregationType, BillingTime, PlanInterval

AGGREGATIONS = [choice for choice, _ in AggregationType.choices]
INTERVALS = [choice for choice, _ in PlanInterval.choices]


def _refuse_if_set(serializer: serializers.Serializer, value: Any) -> Any:
    """A ``validate_<field>`` for a Lago feature that would change billing if ignored."""
    if value:
        raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
    return value


class BillableMetricInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    aggregation_type = serializers.ChoiceField(AGGREGATIONS)
    # Lago's field named field_name: DRF's metaclass takes declared fields off the class, so it never
    # shadows Field.field_name at run time; the stubs cannot know that.
    field_name = serializers.CharField(  # type: ignore[assignment]
        max_length=255, required=False, allow_null=True, allow_blank=True)
    recurring = serializers.BooleanField(required=False, allow_null=True)
    expression = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    filters = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True)

    validate_expression = validate_filters = _refuse_if_set


class BillableMetricUpdateInput(BillableMetricInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    aggregation_type = serializers.ChoiceField(AGGREGATIONS, required=False)


class ChargeInput(serializers.Serializer):
    id = serializers.CharField(required=False, allow_null=True)
    billable_metric_id = serializers.UUIDField(required=False, allow_null=True)
    billable_metric_code = serializers.CharField(max_length=255, required=False, allow_null=True)
    charge_model = serializers.CharField(max_length=32)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    pay_in_advance = serializers.BooleanField(required=False, allow_null=True)
    properties = serializers.DictField(required=False, allow_null=True)


class PlanInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    interval = serializers.ChoiceField(INTERVALS)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$")
    pay_in_advance = serializers.BooleanField(required=False, allow_null=True)
    # Days without base fee from the subscription's start (metering.plan_fees; Lago float).
    trial_period = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=0, required=False,
                                            allow_null=True)
    charges = ChargeInput(many=True, required=False, allow_null=True)


class PlanUpdateInput(PlanInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    interval = serializers.ChoiceField(INTERVALS, required=False)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15, required=False)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)


class SubscriptionInput(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    plan_code = serializers.CharField(max_length=255)
    external_id = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    billing_time = serializers.ChoiceField([c for c, _ in BillingTime.choices], required=False, allow_null=True)
    subscription_at = serializers.DateTimeField(required=False, allow_null=True)
    ending_at = serializers.DateTimeField(required=False, allow_null=True)
    plan_overrides = serializers.DictField(required=False, allow_null=True)

    validate_plan_overrides = _refuse_if_set


class SubscriptionUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    subscription_at = serializers.DateTimeField(required=False, allow_null=True)
    ending_at = serializers.DateTimeField(required=False, allow_null=True)
    plan_overrides = serializers.DictField(required=False, allow_null=True)

    validate_plan_overrides = _refuse_if_set
