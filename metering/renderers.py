"""Lago JSON for metrics, plans, subscriptions and events (also used in webhook payloads)."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

from billing_kit.formatting import iso_millis, iso_seconds, to_cents
from metering.models import AddOn, BillableMetric, Charge, MinimumCommitment, Plan, Subscription
from metering.pricing import render_charge_properties
from metering import plan_fees, windows

# Events have no UUID column: their lago_id is derived from their unique key, so it is
# stable across identical resends and reveals no internal sequence number.
EVENT_ID_NAMESPACE = uuid.UUID("3f0c8a3e-4b0e-4d57-9b1f-2f9a8c6d1e01")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_lago_id(*, service_id: int, external_subscription_id: str, transaction_id: str) -> str:
    """``uuid.uuid5(EVENT_ID_NAMESPACE, "<service>\\0<subscription>\\0<transaction>")``, formatted
    without building UUID objects (this runs for every event of every batch response)."""
    digest = bytearray(hashlib.sha1(
        _NAMESPACE_BYTES + f"{service_id}\0{external_subscription_id}\0{transaction_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def render_billable_metric(metric: BillableMetric) -> dict[str, Any]:
    return {
        "lago_id": str(metric.id),
        "name": metric.name,
        "code": metric.code,
        "description": metric.description or None,
        "aggregation_type": metric.aggregation_type,
        "field_name": metric.field_name or None,
        "recurring": metric.recurring,
        "weighted_interval": None,
        "expression": None,
        "rounding_function": metric.rounding_function or None,
        "rounding_precision": metric.rounding_precision,
        "filters": [],
        "created_at": iso_seconds(metric.created_at),
    }


def render_charge(charge: Charge) -> dict[str, Any]:
    metric = charge.metric
    return {
        "lago_id": str(charge.id),
        "lago_billable_metric_id": str(metric.id),
        "billable_metric_code": metric.code,
        "code": metric.code,
        "invoice_display_name": charge.invoice_display_name or None,
        "created_at": iso_seconds(charge.created_at),
        "charge_model": charge.charge_model,
        "invoiceable": True,
        "regroup_paid_fees": None,
        "pay_in_advance": False,
        "prorated": False,
        "min_amount_cents": to_cents(charge.min_amount, charge.plan.amount_currency),
        "accepts_target_wallet": False,
        "properties": render_charge_properties(charge),
        "applied_pricing_unit": None,
        "lago_parent_id": None,
        "filters": [],
        "taxes": [],
    }


def render_minimum_commitment(plan: Plan) -> dict[str, Any] | None:
    """Lago's plan ``minimum_commitment`` object (its ``interval`` is the plan's), or null."""
    try:
        commitment = plan.minimum_commitment
    except MinimumCommitment.DoesNotExist:
        return None
    return {
        "lago_id": str(commitment.id),
        "plan_code": plan.code,
        "invoice_display_name": commitment.invoice_display_name or None,
        "amount_cents": to_cents(commitment.amount, plan.amount_currency),
        "interval": plan.interval,
        "created_at": iso_seconds(commitment.created_at),
        "updated_at": iso_seconds(commitment.updated_at),
    }


def render_plan(plan: Plan) -> dict[str, Any]:
    return {
        "lago_id": str(plan.id),
        "name": plan.name,
        "invoice_display_name": plan.invoice_display_name or None,
        "created_at": iso_seconds(plan.created_at),
        "code": plan.code,
        "interval": plan.interval,
        "description": plan.description or None,
        "amount_cents": to_cents(plan.amount, plan.amount_currency),
        "amount_currency": plan.amount_currency,
        "trial_period": float(plan.trial_period),  # ok-float (days; Lago's wire type)
        "pay_in_advance": plan.pay_in_advance,
        "bill_charges_monthly": plan.bill_charges_monthly if plan.interval == "yearly" else None,
        "bill_fixed_charges_monthly": None,
        "parent_id": None,
        "pending_deletion": plan.pending_deletion,
        "charges": [render_charge(charge) for charge in plan.charges.all()],
        "fixed_charges": [],
        "usage_thresholds": [],
        "taxes": [],
        "minimum_commitment": render_minimum_commitment(plan),
        "metadata": plan.metadata,
    }


def _downgrade_at(subscription: Subscription) -> Any:
    """The current window's end; the end of the plan's period holding it when a yearly plan
    bills its charges monthly (``services.subscriptions.downgrade_boundary``)."""
    plan = subscription.plan
    if not plan.bill_charges_monthly or subscription.billing_anchor is None or subscription.current_period_start is None:
        return subscription.current_period_end
    return plan_fees.fee_period(interval=plan.interval, anchor=subscription.billing_anchor,
                                at=subscription.current_period_start, tz=windows.zone(subscription.billing_timezone),
                                started_at=subscription.started_at)[1]


def render_subscription(subscription: Subscription) -> dict[str, Any]:
    link = subscription.account_link
    plan = subscription.plan
    previous = subscription.previous_subscription
    next_plan = subscription.next_plan
    return {
        "lago_id": str(subscription.id),
        "external_id": subscription.external_id,
        "lago_customer_id": str(link.id),
        "external_customer_id": link.external_id,
        "name": subscription.name,
        "plan_code": plan.code,
        "plan_amount_cents": to_cents(subscription.flat_amount, subscription.currency),
        "plan_amount_currency": subscription.currency,
        "status": subscription.status,
        "billing_time": subscription.billing_time,
        "subscription_at": iso_seconds(subscription.subscription_at),
        "started_at": iso_millis(subscription.started_at),
        "activated_at": iso_seconds(subscription.started_at),
        "trial_ended_at": iso_seconds(subscription.trial_ended_at),
        "ending_at": iso_seconds(subscription.ending_at),
        "terminated_at": iso_seconds(subscription.terminated_at),
        "canceled_at": iso_seconds(subscription.canceled_at),
        "created_at": iso_seconds(subscription.created_at),
        "previous_plan_code": previous.plan.code if previous is not None else None,
        "next_plan_code": next_plan.code if next_plan is not None else None,
        # Lago: the date the pending downgrade happens, the current window's end.
        # The date, in the subscription's billing calendar, on which the next plan starts.
        "downgrade_plan_date": (windows.local_date(_downgrade_at(subscription),
                                                   windows.zone(subscription.billing_timezone)).isoformat()
                                if next_plan is not None and subscription.current_period_end else None),
        "current_billing_period_started_at": iso_seconds(subscription.current_period_start),
        "current_billing_period_ending_at": iso_seconds(subscription.current_period_end),
        "on_termination_credit_note": subscription.on_termination_credit_note or None,
        "on_termination_invoice": "generate",
        "progressive_billing_disabled": False,
        "consolidate_invoice": None,
        "purchase_order_number": None,
        "cancellation_reason": None,
        "billing_entity_code": None,
        "activation_rules": [],
        "plan": render_plan(plan),
    }


def render_add_on(add_on: AddOn) -> dict[str, Any]:
    """Lago's add-on object (lago-python-client ``AddOnResponse``)."""
    return {
        "lago_id": str(add_on.pk),
        "name": add_on.name,
        "invoice_display_name": add_on.invoice_display_name or None,
        "code": add_on.code,
        "amount_cents": to_cents(add_on.amount, add_on.amount_currency),
        "amount_currency": add_on.amount_currency,
        "description": add_on.description or None,
        "created_at": iso_seconds(add_on.created_at),
        "taxes": [],
    }
