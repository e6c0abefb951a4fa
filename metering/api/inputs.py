"""Explicit input schemas of metrics, plans and subscriptions (no mass assignment).

Every field of Lago's metric, plan and charge inputs (reference/lago-api.md §4.5, §4.6)
is declared here and either works or is refused with ``not_supported`` when set to
anything but its neutral value (docs/api.md "Catalogue fields"): nothing Lago knows is
accepted and ignored. Keys Lago itself does not permit are ignored, as Lago ignores
unpermitted parameters.
"""
from typing import Any

from rest_framework import serializers

from billing_kit.errors import ErrorCode
from billing_kit.wire import refused_in_docs
from metering.models import AggregationType, BillingTime, PlanInterval

AGGREGATIONS = [choice for choice, _ in AggregationType.choices]
INTERVALS = [choice for choice, _ in PlanInterval.choices]
# Values Lago accepts that are not built here: ``not_supported``, not ``value_is_invalid``.
LAGO_AGGREGATIONS_NOT_BUILT = ["weighted_sum_agg", "custom_agg"]
LAGO_INTERVALS_NOT_BUILT = ["semiannual"]


class _LagoChoiceField(serializers.ChoiceField):
    """A choice among the values built; a value Lago knows but that is not built is refused
    with ``not_supported`` (the client is told it is a gap of ours, not a typo)."""

    def __init__(self, choices: list[str], *, not_built: list[str], **kwargs: Any) -> None:
        self.not_built = not_built
        super().__init__(choices, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data in self.not_built:
            raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
        return super().to_internal_value(data)


def _refuse_if_set(serializer: serializers.Serializer, value: Any) -> Any:
    """A ``validate_<field>`` for a Lago feature that would change billing if ignored."""
    if value:
        raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
    return value


def _refuse_if_false(serializer: serializers.Serializer, value: Any) -> Any:
    """A ``validate_<field>`` for a Lago flag whose default (true) is the only behaviour built."""
    if value is False:
        raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
    return value


def _anything(**kwargs: Any) -> serializers.JSONField:
    """A Lago field of any JSON shape that is only checked for being empty (``_refuse_if_set``)."""
    return serializers.JSONField(required=False, allow_null=True, **kwargs)


ROUNDING_FUNCTIONS = ["round", "ceil", "floor"]


class BillableMetricInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    aggregation_type = _LagoChoiceField(AGGREGATIONS, not_built=LAGO_AGGREGATIONS_NOT_BUILT)
    # Lago's field named field_name: DRF's metaclass takes declared fields off the class, so it never
    # shadows Field.field_name at run time; the stubs cannot know that.
    field_name = serializers.CharField(  # type: ignore[assignment]
        max_length=255, required=False, allow_null=True, allow_blank=True)
    recurring = serializers.BooleanField(required=False, allow_null=True)
    rounding_function = serializers.ChoiceField(ROUNDING_FUNCTIONS, required=False, allow_null=True)
    rounding_precision = serializers.IntegerField(min_value=-10, max_value=10, required=False, allow_null=True)
    expression = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    filters = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True)
    weighted_interval = serializers.CharField(required=False, allow_null=True, allow_blank=True)

    validate_expression = validate_filters = validate_weighted_interval = _refuse_if_set


class BillableMetricUpdateInput(BillableMetricInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    aggregation_type = _LagoChoiceField(AGGREGATIONS, not_built=LAGO_AGGREGATIONS_NOT_BUILT, required=False)


class ChargeInput(serializers.Serializer):
    id = serializers.CharField(required=False, allow_null=True)
    billable_metric_id = serializers.UUIDField(required=False, allow_null=True)
    billable_metric_code = serializers.CharField(max_length=255, required=False, allow_null=True)
    charge_model = serializers.CharField(max_length=32)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    pay_in_advance = serializers.BooleanField(required=False, allow_null=True)
    properties = serializers.DictField(required=False, allow_null=True)
    min_amount_cents = serializers.IntegerField(min_value=0, max_value=10**15, required=False, allow_null=True)
    # Lago charge fields not built: refused unless neutral (docs/api.md "Catalogue fields").
    code = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    invoiceable = serializers.BooleanField(required=False, allow_null=True)
    prorated = serializers.BooleanField(required=False, allow_null=True)
    regroup_paid_fees = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    accepts_target_wallet = serializers.BooleanField(required=False, allow_null=True)
    filters = _anything()
    tax_codes = _anything()
    applied_pricing_unit = _anything()

    validate_invoiceable = _refuse_if_false
    validate_prorated = validate_regroup_paid_fees = validate_accepts_target_wallet = _refuse_if_set
    validate_filters = validate_tax_codes = validate_applied_pricing_unit = _refuse_if_set


class MinimumCommitmentInput(serializers.Serializer):
    """Lago's ``minimum_commitment`` of a plan; ``amount_cents`` is required to create one
    (the catalogue service says so), not to rename an existing one."""

    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15, required=False)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    tax_codes = _anything()

    validate_tax_codes = _refuse_if_set


class PlanInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    interval = _LagoChoiceField(INTERVALS, not_built=LAGO_INTERVALS_NOT_BUILT)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$")
    pay_in_advance = serializers.BooleanField(required=False, allow_null=True)
    # Days without base fee from the subscription's start (metering.plan_fees; Lago float).
    trial_period = serializers.DecimalField(max_digits=10, decimal_places=4, min_value=0, required=False,
                                            allow_null=True)
    # A ListField, not ChargeInput(many=True): DRF hands a list serializer's allow_null to
    # its child too, so a null item reached the catalogue service (a 500).
    charges = serializers.ListField(child=ChargeInput(), required=False, allow_null=True)
    # Lago plan fields not built: refused unless neutral (docs/api.md "Catalogue fields").
    # ``cascade_updates`` is accepted: plan overrides are refused, so there are no child
    # plans to cascade to and either value means the same.
    cascade_updates = serializers.BooleanField(required=False, allow_null=True)
    # Yearly plans: usage windows are months, the base fee yearly (docs/rating.md); ignored (null)
    # on other intervals, as Lago.
    bill_charges_monthly = serializers.BooleanField(required=False, allow_null=True)
    bill_fixed_charges_monthly = serializers.BooleanField(required=False, allow_null=True)
    # A minimum per billing period (metering.commitments); null or {} removes it on update.
    minimum_commitment = MinimumCommitmentInput(required=False, allow_null=True)
    usage_thresholds = _anything()
    fixed_charges = _anything()
    tax_codes = _anything()
    # Lago's plan metadata (string keys, string or null values): stored and rendered.
    metadata = _anything()
    # Feature entitlements belong to the apps (DESIGN "Locked decisions" 4), not to billing.
    entitlements = _anything()

    validate_entitlements = _refuse_if_set
    validate_bill_fixed_charges_monthly = _refuse_if_set
    validate_usage_thresholds = validate_fixed_charges = _refuse_if_set
    validate_tax_codes = _refuse_if_set


class PlanUpdateInput(PlanInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    interval = _LagoChoiceField(INTERVALS, not_built=LAGO_INTERVALS_NOT_BUILT, required=False)
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


class AddOnInput(serializers.Serializer):
    """Lago's add-on input. Taxes are Odoo's (the product's taxes mapped by the fiscal position):
    ``tax_codes`` is refused when set."""

    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$")
    tax_codes = _anything()

    validate_tax_codes = _refuse_if_set


class AddOnUpdateInput(AddOnInput):
    name = serializers.CharField(max_length=255, required=False)
    code = serializers.CharField(max_length=255, required=False)
    amount_cents = serializers.IntegerField(min_value=0, max_value=10**15, required=False)
    amount_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)


def _refused_fields(serializer: type[serializers.Serializer]) -> tuple[str, ...]:
    """The fields a serializer refuses unless neutral (their ``validate_<field>``)."""
    refusals = (_refuse_if_set, _refuse_if_false)
    return tuple(name for name in serializer._declared_fields
                 if getattr(serializer, f"validate_{name}", None) in refusals)


for _serializer in (BillableMetricInput, BillableMetricUpdateInput, ChargeInput, MinimumCommitmentInput,
                    PlanInput, PlanUpdateInput, SubscriptionInput, SubscriptionUpdateInput):
    refused_in_docs(_serializer.__name__, _refused_fields(_serializer))
