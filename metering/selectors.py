"""Reads of the metering catalogue, subscriptions and events, always scoped to one service."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from datetime import datetime

from django.db.models import F, Prefetch, QuerySet

from billing_kit.formatting import to_cents

from identity.models import AccountLink, Service
from metering.models import (
    AddOn,
    BillableMetric,
    Charge,
    Plan,
    RatedUsage,
    RatedUsageState,
    Subscription,
    SubscriptionStatus,
    UsageEvent,
    UsageEventKey,
)
from metering.rating import ChargeUsage, compute_usage

SUBSCRIPTION_STATUSES = [choice for choice, _ in SubscriptionStatus.choices]


def metrics(*, service: Service) -> QuerySet[BillableMetric]:
    return BillableMetric.objects.filter(service=service).order_by("-created_at", "id")


def get_metric(*, service: Service, code: str) -> BillableMetric | None:
    return metrics(service=service).filter(code=code).first()


def charges_prefetch(*, lookup: str = "charges") -> Prefetch:
    """A plan's charges as the renderers read them (metric, tiers, creation order)."""
    return Prefetch(lookup, queryset=Charge.objects.select_related("metric").prefetch_related("tiers")
                    .order_by("created_at", "id"))


def plans(*, service: Service) -> QuerySet[Plan]:
    """Lago lists plans pending deletion too; deleted (discarded) ones never."""
    return (Plan.objects.filter(service=service, deleted_at__isnull=True).select_related("minimum_commitment")
            .prefetch_related(charges_prefetch())
            .order_by("-created_at", "id"))


def get_plan(*, service: Service, code: str, include_pending_deletion: bool = True) -> Plan | None:
    found = plans(service=service).filter(code=code)
    if not include_pending_deletion:
        found = found.filter(pending_deletion=False)
    return found.first()


def add_ons(*, service: Service) -> QuerySet[AddOn]:
    """Lago lists live add-ons only (a deleted one is gone from the API)."""
    return AddOn.objects.filter(service=service, deleted_at__isnull=True).order_by("-created_at", "id")


def get_add_on(*, service: Service, code: str) -> AddOn | None:
    return add_ons(service=service).filter(code=code).first()


def subscriptions(*, service: Service) -> QuerySet[Subscription]:
    return (Subscription.objects.filter(service=service)
            .select_related("account_link__customer", "plan__minimum_commitment", "service",
                            "previous_subscription__plan", "next_plan")
            .prefetch_related(charges_prefetch(lookup="plan__charges"))
            .order_by("-created_at", "id"))


def get_subscription(*, service: Service, external_id: str, status: str = SubscriptionStatus.ACTIVE
                     ) -> Subscription | None:
    """By the app's own id and a status (Lago's default: ``active``); newest first.

    Resolution never leaves ``service`` and never looks at internal primary keys, so an
    integer-looking external id can only ever name this service's subscription.
    """
    return subscriptions(service=service).filter(external_id=external_id, status=status).first()


def list_subscriptions(*, service: Service, statuses: list[str], external_customer_id: str | None = None,
                       plan_code: str | None = None, link: AccountLink | None = None
                       ) -> QuerySet[Subscription]:
    result = subscriptions(service=service).filter(status__in=statuses)
    if link is not None:
        result = result.filter(account_link=link)
    if external_customer_id:
        result = result.filter(account_link__external_id=external_customer_id)
    if plan_code:
        result = result.filter(plan__code=plan_code)
    return result


def get_event(*, service: Service, transaction_id: str, external_subscription_id: str | None = None
              ) -> UsageEvent | None:
    """The newest event stored under ``transaction_id`` (of one subscription if given).

    Found through the key table, whose primary key leads with (service, transaction_id):
    an index lookup whatever the number of events, then the event by its id in the
    partition of its timestamp."""
    keys = UsageEventKey.objects.filter(service=service, transaction_id=transaction_id)
    if external_subscription_id:
        keys = keys.filter(external_subscription_id=external_subscription_id)
    key = keys.order_by("-event_id").values_list("event_id", "timestamp").first()
    if key is None:
        return None
    return (UsageEvent.objects.filter(service=service, pk=key[0], timestamp=key[1])
            .select_related("subscription__account_link").first())


def list_events(*, service: Service, code: str | None = None, external_subscription_id: str | None = None,
                timestamp_from: datetime | None = None, timestamp_to: datetime | None = None,
                from_subscription_start: bool = False) -> QuerySet[UsageEvent]:
    """Lago's ``GET /events``: this service's events, newest timestamp first."""
    events = UsageEvent.objects.filter(service=service)
    if code:
        events = events.filter(code=code)
    if external_subscription_id:
        events = events.filter(external_subscription_id=external_subscription_id)
    if timestamp_from is not None:
        events = events.filter(timestamp__gte=timestamp_from)
    if timestamp_to is not None:
        events = events.filter(timestamp__lte=timestamp_to)
    if from_subscription_start:
        events = events.filter(timestamp__gte=F("subscription__started_at"))
    return events.select_related("subscription").order_by("-timestamp", "-id")


@dataclass(frozen=True)
class LifetimeUsage:
    invoiced_amount_cents: int
    current_amount_cents: int


def lifetime_usage(*, subscription: Subscription) -> LifetimeUsage:
    """Lago's lifetime usage, from the rating engine's own figures: the usage of the
    subscription's closed (frozen) windows — what goes on its Odoo invoices, each window
    and charge rounded to cents as its invoice line is — and the open window computed
    live by ``compute_usage``, as ``current_usage``."""
    invoiced = sum(to_cents(amount, subscription.currency) for amount in RatedUsage.objects.filter(
        subscription=subscription, state=RatedUsageState.FROZEN).values_list("amount", flat=True))
    current = 0
    if (subscription.status == SubscriptionStatus.ACTIVE and subscription.current_period_start is not None
            and subscription.current_period_end is not None):
        usage = compute_usage(subscription=subscription, window_start=subscription.current_period_start,
                              window_end=subscription.current_period_end)
        current = sum(charge.amount_cents for charge in usage.charges)
    return LifetimeUsage(invoiced_amount_cents=invoiced, current_amount_cents=current)


@dataclass(frozen=True)
class UsagePeriod:
    window_start: datetime
    window_end: datetime
    currency: str
    charges: list[ChargeUsage]


def past_usage_periods(*, subscription: Subscription, metric_code: str | None = None) -> list[UsagePeriod]:
    """Lago's past usage, newest period first: the subscription's closed (frozen) windows with
    the rating engine's stored figures — what its Odoo invoice lines carry. A charge that rated
    nothing in a window has no row and is not listed."""
    rows = (RatedUsage.objects.filter(subscription=subscription, state=RatedUsageState.FROZEN)
            .select_related("charge__metric").order_by("-window_start", "charge__created_at", "charge_id"))
    if metric_code:
        rows = rows.filter(charge__metric__code=metric_code)
    periods: dict[datetime, UsagePeriod] = {}
    for row in rows:
        period = periods.setdefault(row.window_start, UsagePeriod(row.window_start, row.window_end,
                                                                  subscription.currency, []))
        period.charges.append(ChargeUsage(charge=row.charge, units=row.units, billable_units=row.billable_units,
                                          amount=row.amount, events_count=row.events_count,
                                          currency=subscription.currency))
    return list(periods.values())


def usage_taxes_cents(*, subscription: Subscription, charges: list[ChargeUsage], currency: str | None) -> int:
    """Lago's ``apply_taxes`` of current usage: each charge's amount times the rate Odoo applies to its
    product on the subscription's order (the partner's fiscal position included; cached by the Odoo pull in
    ``Subscription.odoo_tax_rates``, the recurring line's rate for a product with no line yet), each fee's tax
    rounded once to the currency's minor unit as Lago rounds a fee's taxes. No cached rate: no tax."""
    rates = subscription.odoo_tax_rates or {}
    total = 0
    for usage in charges:
        rate = Decimal(rates.get(str(usage.charge.odoo_product_id or ""), rates.get("", "0")))
        total += to_cents(usage.amount * rate / 100, currency)
    return total
