"""OpenAPI of metering's wire objects (as ``metering.renderers`` and the views write them)
and of the event inputs."""
from __future__ import annotations

from typing import Any

from billing_kit import examples
from billing_kit.wire import array, component, obj, ref

from metering.models import AggregationType, BillingTime, ChargeModel, PlanInterval, SubscriptionStatus

BILLABLE_METRIC = component("BillableMetric", obj({
    "lago_id": "string", "name": "string", "code": "string", "description": "string?",
    "aggregation_type": {"type": "string", "enum": [c for c, _ in AggregationType.choices]},
    "field_name": "string?", "recurring": "boolean", "weighted_interval": "string?", "expression": "string?",
    "rounding_function": {"type": "string", "enum": ["round", "ceil", "floor"], "nullable": True},
    "rounding_precision": "integer?", "filters": "array", "created_at": "datetime",
}))

CHARGE = component("Charge", obj({
    "lago_id": "string", "lago_billable_metric_id": "string", "billable_metric_code": "string", "code": "string",
    "invoice_display_name": "string?", "created_at": "datetime",
    "charge_model": {"type": "string", "enum": [c for c, _ in ChargeModel.choices]},
    "invoiceable": "boolean", "regroup_paid_fees": "string?", "pay_in_advance": "boolean", "prorated": "boolean",
    "min_amount_cents": "integer", "accepts_target_wallet": "boolean",
    "properties": {"type": "object", "additionalProperties": True,
                   "description": "The charge model's properties; amounts are decimal strings."},
    "applied_pricing_unit": "object?", "lago_parent_id": "string?", "filters": "array", "taxes": "array",
}))

PLAN = component("Plan", obj({
    "lago_id": "string", "name": "string", "invoice_display_name": "string?", "created_at": "datetime",
    "code": "string", "interval": {"type": "string", "enum": [c for c, _ in PlanInterval.choices]},
    "description": "string?", "amount_cents": "integer", "amount_currency": "currency",
    "trial_period": "number", "pay_in_advance": "boolean", "bill_charges_monthly": "boolean?",
    "bill_fixed_charges_monthly": "boolean?", "parent_id": "string?", "pending_deletion": "boolean",
    "charges": array(CHARGE), "fixed_charges": "array", "usage_thresholds": "array", "taxes": "array",
    "minimum_commitment": obj({
        "lago_id": "string", "plan_code": "string", "invoice_display_name": "string?", "amount_cents": "integer",
        "interval": "string", "created_at": "datetime", "updated_at": "datetime"}, nullable=True),
    "metadata": {"type": "object", "additionalProperties": {"type": "string", "nullable": True}, "nullable": True},
}))

SUBSCRIPTION = component("Subscription", obj({
    "lago_id": "string", "external_id": "string", "lago_customer_id": "string", "external_customer_id": "string",
    "name": "string", "plan_code": "string", "plan_amount_cents": "integer", "plan_amount_currency": "currency",
    "status": {"type": "string", "enum": [c for c, _ in SubscriptionStatus.choices]},
    "billing_time": {"type": "string", "enum": [c for c, _ in BillingTime.choices]},
    "subscription_at": "datetime?", "started_at": "datetime?", "activated_at": "datetime?",
    "trial_ended_at": "datetime?", "ending_at": "datetime?", "terminated_at": "datetime?",
    "canceled_at": "datetime?", "created_at": "datetime", "previous_plan_code": "string?",
    "next_plan_code": "string?", "downgrade_plan_date": "date?", "current_billing_period_started_at": "datetime?",
    "current_billing_period_ending_at": "datetime?",
    "on_termination_credit_note": {"type": "string", "enum": ["credit", "refund", "offset", "skip"],
                                   "nullable": True},
    "on_termination_invoice": "string", "progressive_billing_disabled": "boolean", "consolidate_invoice": "boolean?",
    "purchase_order_number": "string?", "cancellation_reason": "string?", "billing_entity_code": "string?",
    "activation_rules": "array", "plan": PLAN,
}))

EVENT = component("Event", obj({
    "lago_id": "uuid", "transaction_id": "string", "lago_customer_id": "string?", "code": "string",
    "timestamp": "datetime", "precise_total_amount_cents": "decimal?",
    "properties": {"type": "object", "additionalProperties": True, "nullable": True},
    "lago_subscription_id": "string?", "external_subscription_id": "string", "created_at": "datetime",
}, description="An accepted event. lago_customer_id is known at once: events are validated synchronously."))

_CHARGE_USAGE_FIELDS: dict[str, Any] = {
    "units": "decimal", "total_aggregated_units": "decimal", "billable_units": "decimal", "events_count": "integer",
    "amount_cents": "integer", "precise_amount": "decimal", "amount_currency": "currency",
    "pricing_unit_details": "object?",
    "charge": obj({"lago_id": "string", "code": "string", "charge_model": "string",
                   "invoice_display_name": "string?"}),
    "billable_metric": obj({"lago_id": "string", "name": "string", "code": "string", "aggregation_type": "string"}),
    "filters": "array", "grouped_usage": "array", "presentation_breakdowns": "array",
}
CHARGE_USAGE = component("ChargeUsage", obj(_CHARGE_USAGE_FIELDS))

_USAGE_FIELDS: dict[str, Any] = {
    "from_datetime": "datetime", "to_datetime": "datetime", "issuing_date": "date", "lago_invoice_id": "string?",
    "currency": "currency", "amount_cents": "integer", "taxes_amount_cents": "integer",
    "total_amount_cents": "integer", "precise_amount": "decimal",
}
CUSTOMER_USAGE = component("CustomerUsage", obj({**_USAGE_FIELDS, "charges_usage": array(CHARGE_USAGE)},
                                                description="The usage of one billing window."))

PROJECTED_CHARGE_USAGE = component("ProjectedChargeUsage", obj({
    **_CHARGE_USAGE_FIELDS, "projected_units": "decimal", "projected_amount_cents": "integer",
    "projected_precise_amount": "decimal", "groups": "array", "projected_presentation_breakdowns": "array",
}))
PROJECTED_USAGE = component("CustomerProjectedUsage", obj({
    **_USAGE_FIELDS, "projected_amount_cents": "integer", "projected_precise_amount": "decimal",
    "charges_usage": array(PROJECTED_CHARGE_USAGE),
}, description="The open window's usage so far, and projected linearly to the window's end."))

LIFETIME_USAGE = component("LifetimeUsage", obj({
    "lago_id": "uuid", "lago_subscription_id": "string", "external_subscription_id": "string",
    "external_historical_usage_amount_cents": "integer", "invoiced_usage_amount_cents": "integer",
    "current_usage_amount_cents": "integer", "from_datetime": "datetime?", "to_datetime": "datetime?",
    "usage_thresholds": "array",
}))

ADD_ON = component("AddOn", obj({
    "lago_id": "string", "name": "string", "invoice_display_name": "string?", "code": "string",
    "amount_cents": "integer", "amount_currency": "currency", "description": "string?", "created_at": "datetime",
    "taxes": "array",
}, description="An add-on: a one-off charge billed by POST /invoices (taxes are Odoo's: always empty here)."))

PLAN_METADATA = obj({"metadata": {"type": "object", "additionalProperties": {"type": "string", "nullable": True},
                                  "nullable": True}})

# ---------------------------------------------------------------- event inputs
_TIMESTAMP = {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}],
              "nullable": True,
              "description": "Unix seconds: integer, float or numeric string; null or absent = now."}
_EVENT_INPUT_FIELDS: dict[str, Any] = {
    "transaction_id": {"type": "string", "minLength": 1, "description": "Idempotency key (per subscription)."},
    "external_subscription_id": {"type": "string", "minLength": 1,
                                 "description": "The subscription's id in the calling app."},
    "code": {"type": "string", "minLength": 1, "description": "Billable metric code."},
    "timestamp": _TIMESTAMP,
    "precise_total_amount_cents": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "nullable": True,
                                   "description": "Decimal string."},
    "properties": {"type": "object", "additionalProperties": True, "nullable": True,
                   "description": "The metric's field_name must be numeric."},
}
EVENT_INPUT = component("EventInput", obj(_EVENT_INPUT_FIELDS, optional=(
    "timestamp", "precise_total_amount_cents", "properties")))
EVENT_ESTIMATE_INPUT = component("EventEstimateInput", obj(
    {k: v for k, v in _EVENT_INPUT_FIELDS.items() if k != "transaction_id"},
    optional=("timestamp", "precise_total_amount_cents", "properties")))

__all__ = ["ADD_ON", "BILLABLE_METRIC", "CHARGE", "CUSTOMER_USAGE", "EVENT", "EVENT_ESTIMATE_INPUT", "EVENT_INPUT",
           "LIFETIME_USAGE", "PLAN", "PLAN_METADATA", "PROJECTED_USAGE", "SUBSCRIPTION", "ref"]

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("billable_metric", name="Storage", code="storage_gb", description="GB stored",
                aggregation_type="sum_agg", field_name="gb", recurring=False)
examples.values("plan", name="Premium", code="premium", interval="monthly", amount_cents=10000,
                description="Premium plan", pay_in_advance=False, trial_period=0.0)
examples.values("charge", code="storage", charge_model="standard", billable_metric_code="storage_gb",
                properties={"amount": "0.05"}, invoiceable=True, min_amount_cents=0, regroup_paid_fees=None,
                applied_pricing_unit=None)
examples.values("subscription", external_id="sub_1234", name="Premium", plan_code="premium", status="active",
                billing_time="calendar", subscription_at="2026-01-01T00:00:00Z", ending_at=None,
                plan_amount_cents=10000, on_termination_credit_note=None, on_termination_invoice="generate",
                current_billing_period_ending_at="2026-02-01T00:00:00Z")
examples.values("event", transaction_id="tr_2026_01_15_0001", code="storage_gb", timestamp=1768435200,
                properties={"gb": "12.5"}, precise_total_amount_cents=None)
examples.values("add_on", code="setup_fee", name="Setup fee", amount_cents=50000, description="Onboarding")
examples.values("customer_usage", from_datetime="2026-01-01T00:00:00Z", to_datetime="2026-02-01T00:00:00Z")
