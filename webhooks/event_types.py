"""Webhook types.

``WebhookType`` names every type Fusion Billing sends; whoever records an event names
its type with it, and ``EMITTED`` lists them all (a test checks no other type is
recorded). ``ACCEPTED`` is what an endpoint may subscribe to: everything Lago documents
(``config/webhook_event_types.yml``), so an app migrating from Lago can keep its
endpoint configuration unchanged even for types we never emit.
"""

from __future__ import annotations

import re
from enum import StrEnum


class WebhookType(StrEnum):
    """The types Fusion Billing sends (``webhook_type`` of the envelope)."""

    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    SUBSCRIPTION_STARTED = "subscription.started"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_TERMINATED = "subscription.terminated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_TRIAL_ENDED = "subscription.trial_ended"
    SUBSCRIPTION_TERMINATION_ALERT = "subscription.termination_alert"
    INVOICE_CREATED = "invoice.created"
    INVOICE_PAYMENT_STATUS_UPDATED = "invoice.payment_status_updated"
    INVOICE_VOIDED = "invoice.voided"
    INVOICE_DRAFTED = "invoice.drafted"
    INVOICE_PAYMENT_OVERDUE = "invoice.payment_overdue"
    INVOICE_ONE_OFF_CREATED = "invoice.one_off_created"
    INVOICE_PAID_CREDIT_ADDED = "invoice.paid_credit_added"
    WALLET_CREATED = "wallet.created"
    WALLET_UPDATED = "wallet.updated"
    WALLET_TERMINATED = "wallet.terminated"
    WALLET_DEPLETED_ONGOING_BALANCE = "wallet.depleted_ongoing_balance"
    WALLET_TRANSACTION_CREATED = "wallet_transaction.created"
    WALLET_TRANSACTION_UPDATED = "wallet_transaction.updated"
    INVOICE_GENERATED = "invoice.generated"
    INVOICE_PAYMENT_FAILURE = "invoice.payment_failure"
    CREDIT_NOTE_CREATED = "credit_note.created"
    PLAN_DELETED = "plan.deleted"
    # Services in lenient event mode: the events kept unmatched since the last run.
    EVENTS_ERRORS = "events.errors"
    # Fusion's own notice: the circuit breaker disabled one of the service's endpoints.
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"


EMITTED: tuple[str, ...] = tuple(t.value for t in WebhookType)

LAGO_TYPES: tuple[str, ...] = (
    "alert.triggered",
    "billable_metric.created", "billable_metric.updated", "billable_metric.deleted",
    "customer.created", "customer.updated", "customer.vies_check", "customer.checkout_url_generated",
    "customer.accounting_provider_created", "customer.accounting_provider_error",
    "customer.crm_provider_created", "customer.crm_provider_error",
    "customer.payment_provider_created", "customer.payment_provider_error", "customer.tax_provider_error",
    "credit_note.created", "credit_note.generated", "credit_note.provider_refund_failure",
    "dunning_campaign.finished",
    "event.error", "events.errors",
    "feature.created", "feature.updated", "feature.deleted",
    "fee.created", "fee.tax_provider_error",
    "invoice.created", "invoice.one_off_created", "invoice.paid_credit_added", "invoice.generated",
    "invoice.drafted", "invoice.ready_to_finalize", "invoice.voided", "invoice.deleted",
    "invoice.payment_dispute_lost", "invoice.payment_status_updated", "invoice.payment_overdue",
    "invoice.payment_failure", "invoice.resynced",
    "integration.provider_error",
    "order.created", "order.executed",
    "order_form.created", "order_form.signed", "order_form.expired", "order_form.voided",
    "quote.created", "quote.approved", "quote.voided",
    "payment.succeeded", "payment.requires_action", "payment_provider.error",
    "payment_receipt.created", "payment_receipt.generated",
    "payment_request.created", "payment_request.payment_failure", "payment_request.payment_status_updated",
    "plan.created", "plan.updated", "plan.deleted",
    "subscription.started", "subscription.terminated", "subscription.updated", "subscription.canceled",
    "subscription.incomplete", "subscription.termination_alert", "subscription.trial_ended",
    "subscription.usage_threshold_reached",
    "wallet.created", "wallet.updated", "wallet.terminated", "wallet.depleted_ongoing_balance",
    "wallet_transaction.created", "wallet_transaction.updated", "wallet_transaction.payment_failure",
)

WILDCARD = "*"
ACCEPTED: frozenset[str] = frozenset(LAGO_TYPES) | frozenset(EMITTED)

WEBHOOK_TYPE_PATTERN = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
OBJECT_TYPE_PATTERN = re.compile(r"^[a-z][a-z_]*$")


def matches(event_types: list[str] | None, webhook_type: str) -> bool:
    """``None`` or ``["*"]`` subscribes to everything (Lago semantics)."""
    return event_types is None or WILDCARD in event_types or webhook_type in event_types
