"""Writes of metering, by concern; callers use this package's names
(``from metering import services; services.create_subscription(...)``).

* ``catalogue``: billable metrics, plans and their charges;
* ``subscriptions``: the subscription lifecycle and its webhooks;
* ``ingest``: usage events, validated and stored all or nothing.

Every function takes the calling ``service`` (or one of its objects) and only ever
touches that service's rows. Failures are raised as the API kit's domain errors so that
views stay thin.
"""
from __future__ import annotations

from metering.services.catalogue import (
    ChargeSpec,
    create_billable_metric,
    create_plan,
    create_plan_charge,
    delete_billable_metric,
    delete_plan_charge,
    delete_plan_metadata_key,
    discard_plan,
    merge_plan_metadata,
    plan_charge,
    prepare_plan_deletion,
    replace_plan_metadata,
    update_billable_metric,
    update_plan,
    update_plan_charge,
)
from metering.services.ingest import EventsRejected, StoredEvent, estimate_fees, ingest_events
from metering.services.lenient import ingest as ingest_events_leniently, report_event_errors
from metering.services.subscriptions import (
    SubscriptionResult,
    activate_due_subscriptions,
    apply_due_downgrade,
    create_subscription,
    delete_customer,
    end_trials,
    send_termination_alerts,
    terminate_customer_subscriptions,
    terminate_subscription,
    update_subscription,
)

__all__ = [
    "ingest_events_leniently",
    "report_event_errors",
    "ChargeSpec",
    "EventsRejected",
    "StoredEvent",
    "SubscriptionResult",
    "activate_due_subscriptions",
    "apply_due_downgrade",
    "create_billable_metric",
    "create_plan",
    "create_subscription",
    "delete_billable_metric",
    "delete_customer",
    "end_trials",
    "estimate_fees",
    "create_plan_charge",
    "delete_plan_charge",
    "delete_plan_metadata_key",
    "plan_charge",
    "update_plan_charge",
    "discard_plan",
    "merge_plan_metadata",
    "prepare_plan_deletion",
    "replace_plan_metadata",
    "ingest_events",
    "send_termination_alerts",
    "terminate_customer_subscriptions",
    "terminate_subscription",
    "update_billable_metric",
    "update_plan",
    "update_subscription",
]
