"""What the console shows: the dashboard's figures and the customer 360 page (reads only).

Dashboard queries stay fast on large data: event counts come from the hourly rollup
(``console.services.refresh_event_rollup``), never from the events table; the rest reads
small tables (subscriptions, rated windows, sync states) or indexed recent ranges.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncDay, TruncMonth
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from billing_kit.formatting import money_display
from console.models import DashboardRefresh, EventHourlyRollup
from identity.models import AccountLink, Customer, Service
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    PlanInterval,
    RatedUsage,
    RatedUsageState,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
    UsageEvent,
    window_due_after_grace,
)
from metering.rating import compute_usage
from migration.models import ImportRun, Reconciliation, ReconciliationStatus
from odoo_bridge.models import Invoice, OdooConnectionState, OdooSyncState
from odoo_bridge.state_models import ConnectionStatus, SyncStatus
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from webhooks.selectors import delivery_health

# A worker that has not refreshed the dashboard for this long is reported as not alive.
WORKER_SILENCE_ALERT = timedelta(minutes=5)
MONTHLY_FACTOR = {
    PlanInterval.WEEKLY: Decimal(52) / Decimal(12),
    PlanInterval.MONTHLY: Decimal(1),
    PlanInterval.QUARTERLY: Decimal(1) / Decimal(3),
    PlanInterval.YEARLY: Decimal(1) / Decimal(12),
}


# ------------------------------------------------------------------ customer display data
def customer_display(customer: Customer) -> dict[str, str]:
    """Name, email and company of a unified customer. Profiles belong to each service's
    account, so ops see the oldest account's (prefetch ``account_links`` for lists)."""
    accounts = sorted(customer.account_links.all(), key=lambda link: link.created_at)
    first = accounts[0] if accounts else None
    return {
        "name": (first.name if first else "") or "",
        "email": customer.email or "",
        "company": (first.legal_name if first else "") or "",
    }


def customer_label(customer: Customer) -> str:
    shown = customer_display(customer)
    return shown["name"] or shown["email"] or str(customer.pk)


# ------------------------------------------------------------------ health strip
@dataclass
class HealthItem:
    key: str
    label: str
    state: str  # ok | warn | bad
    text: str
    url: str = ""


def _admin_url(name: str, query: str = "") -> str:
    return reverse(f"admin:{name}") + (f"?{query}" if query else "")


def health_strip(*, now: datetime, database_ok: bool, broker_ok: bool) -> list[HealthItem]:
    items = [
        HealthItem("database", "Database", "ok" if database_ok else "bad", "answers" if database_ok else "down"),
        HealthItem("broker", "Broker", "ok" if broker_ok else "bad", "answers" if broker_ok else "down"),
    ]
    refresh = DashboardRefresh.objects.filter(pk=1).first()
    seen = refresh.worker_seen_at if refresh else None
    if seen is None:
        items.append(HealthItem("workers", "Workers", "bad", "no worker seen yet",
                                _admin_url("django_celery_beat_periodictask_changelist")))
    else:
        age = now - seen
        items.append(HealthItem("workers", "Workers", "ok" if age < WORKER_SILENCE_ALERT else "bad",
                                f"{refresh.worker or 'a worker'} seen {_ago(age)} ago" if refresh else "",
                                _admin_url("django_celery_beat_periodictask_changelist")))
    latest_run = PeriodicTask.objects.exclude(last_run_at=None).order_by("-last_run_at").values_list(
        "last_run_at", flat=True).first()
    # celery-beat writes last_run_at every few minutes only; the dashboard refresh is sent by
    # beat alone, so a worker running it is also a sign of life from beat.
    if seen is not None and (latest_run is None or seen > latest_run):
        latest_run = seen
    items.append(HealthItem(
        "beat", "Beat", "ok" if latest_run and now - latest_run < WORKER_SILENCE_ALERT else "warn",
        f"last run {_ago(now - latest_run)} ago" if latest_run else "never ran",
        _admin_url("django_celery_beat_periodictask_changelist")))
    # Past its end + its own grace (per subscription: customer's, service's or the default).
    oldest_end = (Subscription.objects.filter(window_due_after_grace(now), status=SubscriptionStatus.ACTIVE)
                  .aggregate(oldest=Min("current_period_end"))["oldest"])
    items.append(HealthItem(
        "rating", "Rating lag", "ok" if oldest_end is None else ("warn" if now - oldest_end < timedelta(hours=1)
                                                                 else "bad"),
        "no window past its end" if oldest_end is None else f"a window ended {_ago(now - oldest_end)} ago",
        _admin_url("metering_subscription_changelist", "status__exact=active")))
    backlog = delivery_health(now=now)
    dead = WebhookDelivery.objects.filter(status=WebhookDelivery.DEAD).count()
    items.append(HealthItem(
        "webhooks", "Webhooks", "bad" if dead else ("warn" if backlog["due"] else "ok"),
        f"{backlog['due']} due, {dead} dead letter(s)",
        _admin_url("webhooks_webhookdelivery_changelist", "status__exact=dead" if dead else "status__exact=pending")))
    state = OdooConnectionState.objects.filter(pk=1).first()
    status = state.status if state else ConnectionStatus.UNKNOWN
    failed = OdooSyncState.objects.filter(status=SyncStatus.FAILED).count()
    configured = bool(getattr(settings, "ODOO_URL", ""))
    odoo_state = "bad" if status == ConnectionStatus.BROKEN or failed else (
        "ok" if status == ConnectionStatus.OK or not configured else "warn")
    items.append(HealthItem(
        "odoo", "Odoo", odoo_state,
        f"{'not configured' if not configured else status}, {failed} failed object(s)",
        _admin_url("odoo_bridge_odoosyncstate_changelist", "status__exact=failed") if failed
        else _admin_url("odoo_bridge_odooconnectionstate_changelist")))
    run = ImportRun.objects.order_by("-started_at").first()
    items.append(HealthItem(
        "import", "Last import", "ok" if run is None or run.status in ("succeeded", "running") else "bad",
        f"#{run.pk} {run.status} {_ago(now - run.started_at)} ago" if run else "none yet",
        _admin_url("migration_importrun_changelist")))
    last_check = Reconciliation.objects.order_by("-checked_at").values_list("checked_at", flat=True).first()
    mismatched = (Reconciliation.objects.exclude(status=ReconciliationStatus.MATCH).count()
                  if last_check else 0)
    items.append(HealthItem(
        "reconciliation", "Reconciliation", "ok" if not mismatched else "warn",
        (f"checked {_ago(now - last_check)} ago, {mismatched} not matching" if last_check else "never run"),
        _admin_url("migration_reconciliation_changelist",
                   "status__exact=mismatch" if mismatched else "")))
    return items


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


# ------------------------------------------------------------------ charts
@dataclass
class Series:
    label: str
    data: list[Any]


@dataclass
class Chart:
    key: str
    title: str
    kind: str  # line | bar
    labels: list[str]
    series: list[Series] = field(default_factory=list)
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "kind": self.kind, "labels": self.labels, "unit": self.unit,
                "series": [{"label": s.label, "data": s.data} for s in self.series]}


def _service_codes() -> dict[int, str]:
    return dict(Service.objects.values_list("id", "code"))


def events_per_hour(*, now: datetime, hours: int = 168) -> Chart:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    codes = _service_codes()
    counts: dict[int, dict[datetime, int]] = defaultdict(dict)
    for service_id, hour, events in EventHourlyRollup.objects.filter(hour__gte=start).values_list(
            "service_id", "hour", "events"):
        counts[service_id][hour] = events
    return Chart("events", "Events ingested per hour (7 days)", "line", [f"{s:%m-%d %H}h" for s in slots], [
        Series(codes.get(sid, str(sid)), [by_hour.get(s, 0) for s in slots])
        for sid, by_hour in sorted(counts.items(), key=lambda item: codes.get(item[0], ""))
    ], unit="events")


def _month_starts(now: datetime, months: int) -> list[datetime]:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [first]
    for _ in range(months - 1):
        starts.append((starts[-1] - timedelta(days=1)).replace(day=1))
    return list(reversed(starts))


def rated_per_month(*, now: datetime, months: int = 12) -> Chart:
    starts = _month_starts(now, months)
    codes = _service_codes()
    totals: dict[int, dict[datetime, Decimal]] = defaultdict(dict)
    rows = (RatedUsage.objects.filter(window_start__gte=starts[0])
            .annotate(month=TruncMonth("window_start")).values("subscription__service_id", "month")
            .annotate(total=Sum("amount")).order_by())
    for row in rows:
        totals[row["subscription__service_id"]][row["month"]] = row["total"]
    return Chart("rated", "Rated usage per service per month (12 months)", "bar",
                 [f"{s:%Y-%m}" for s in starts], [
                     Series(codes.get(sid, str(sid)), [str(by_month.get(s, Decimal(0))) for s in starts])
                     for sid, by_month in sorted(totals.items(), key=lambda item: codes.get(item[0], ""))
                 ], unit="amount")


def mrr_by_service() -> Chart:
    """Monthly recurring revenue: live, active subscriptions' flat price per month."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    rows = (Subscription.objects.filter(status=SubscriptionStatus.ACTIVE, mode=SubscriptionMode.LIVE)
            .values("service__code", "plan__interval").annotate(total=Sum("flat_amount")).order_by())
    for row in rows:
        totals[row["service__code"]] += row["total"] * MONTHLY_FACTOR.get(row["plan__interval"], Decimal(1))
    codes = sorted(totals)
    return Chart("mrr", "MRR by service", "bar", codes,
                 [Series("MRR", [str(totals[c].quantize(Decimal("0.01"))) for c in codes])], unit="amount")


def _day_slots(now: datetime, days: int) -> list[datetime]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


def webhook_success_rate(*, now: datetime, days: int = 14) -> Chart:
    slots = _day_slots(now, days)
    rows = (WebhookAttempt.objects.filter(started_at__gte=slots[0]).annotate(day=TruncDay("started_at"))
            .values("day").annotate(total=Count("id"), ok=Count("id", filter=Q(outcome=WebhookAttempt.SUCCEEDED)))
            .order_by())
    by_day = {row["day"]: row for row in rows}
    data: list[float | None] = []
    for slot in slots:
        row = by_day.get(slot)
        data.append(round(100 * row["ok"] / row["total"], 1) if row and row["total"] else None)  # ok-float
    return Chart("webhooks", "Webhook attempts succeeded (%)", "line", [f"{s:%m-%d}" for s in slots],
                 [Series("success %", data)], unit="%")


def odoo_sync_failures(*, now: datetime, days: int = 14) -> Chart:
    slots = _day_slots(now, days)
    rows = (OdooSyncState.objects.filter(status=SyncStatus.FAILED, updated_at__gte=slots[0])
            .annotate(day=TruncDay("updated_at")).values("day").annotate(n=Count("id")).order_by())
    by_day = {row["day"]: row["n"] for row in rows}
    return Chart("odoo", "Odoo sync failures (by day of last failure)", "bar", [f"{s:%m-%d}" for s in slots],
                 [Series("failed objects", [by_day.get(s, 0) for s in slots])], unit="objects")


def dashboard_charts(*, now: datetime) -> list[Chart]:
    return [events_per_hour(now=now), rated_per_month(now=now), mrr_by_service(),
            webhook_success_rate(now=now), odoo_sync_failures(now=now)]


@dataclass
class TopCustomer:
    customer_id: Any
    label: str
    amount: str


def top_customers(*, limit: int = 10) -> list[TopCustomer]:
    """Customers by the rated amount of their open (current) windows."""
    rows = (RatedUsage.objects.filter(state=RatedUsageState.OPEN)
            .values("subscription__account_link__customer_id", "subscription__currency")
            .annotate(total=Sum("amount")).order_by("-total")[:limit])
    customers = Customer.objects.prefetch_related("account_links").in_bulk(
        [r["subscription__account_link__customer_id"] for r in rows])
    return [TopCustomer(r["subscription__account_link__customer_id"],
                        customer_label(customers[r["subscription__account_link__customer_id"]]),
                        money_display(r["total"], r["subscription__currency"]))
            for r in rows if r["subscription__account_link__customer_id"] in customers]


# ------------------------------------------------------------------ customer 360
@dataclass
class ChargeLine:
    metric: str
    charge_model: str
    units: str
    amount: str
    previous_units: str
    previous_amount: str
    current_units_value: float  # ok-float: a chart's bar height, never money
    previous_units_value: float  # ok-float


@dataclass
class SubscriptionView:
    subscription: Subscription
    window: str
    amount: str
    charges: list[ChargeLine]


def _subscription_view(subscription: Subscription) -> SubscriptionView:
    if (subscription.status != SubscriptionStatus.ACTIVE or subscription.current_period_start is None
            or subscription.current_period_end is None):
        return SubscriptionView(subscription, "—", "—", [])
    # The API's own numbers: the same function as GET /customers/{id}/current_usage.
    usage = compute_usage(subscription=subscription, window_start=subscription.current_period_start,
                          window_end=subscription.current_period_end)
    previous = {r.charge_id: r for r in RatedUsage.objects.filter(
        subscription__external_id=subscription.external_id, subscription__service_id=subscription.service_id,
        window_end__lte=subscription.current_period_start).order_by("charge_id", "-window_start")
        .distinct("charge_id")} if _postgresql() else {}
    lines = []
    for charge_usage in usage.charges:
        prior = previous.get(charge_usage.charge.id)
        lines.append(ChargeLine(
            charge_usage.charge.metric.code, charge_usage.charge.charge_model, f"{charge_usage.units.normalize():f}",
            money_display(charge_usage.amount, usage.currency),
            f"{prior.units.normalize():f}" if prior else "—",
            money_display(prior.amount, usage.currency) if prior else "—",
            float(charge_usage.units), float(prior.units) if prior else 0.0))  # ok-float
    total = sum((c.amount for c in usage.charges), Decimal(0))
    return SubscriptionView(subscription, f"[{usage.window_start:%Y-%m-%d %H:%M}, {usage.window_end:%Y-%m-%d %H:%M})",
                            money_display(total, usage.currency), lines)


def _postgresql() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


@dataclass
class CustomerPage:
    customer: Customer
    display: dict[str, str]
    links: list[AccountLink]
    subscriptions: list[SubscriptionView]
    events: list[UsageEvent]
    invoices: list[tuple[Invoice, str]]
    deliveries: list[WebhookDelivery]
    usage_chart: dict[str, Any]
    odoo_partner_url: str


RECENT_EVENTS = 20
WEBHOOK_SCAN = 500


def customer_page(*, customer: Customer) -> CustomerPage:
    links = list(AccountLink.objects.filter(customer=customer).select_related("service").order_by("service__code"))
    subscriptions = list(Subscription.objects.filter(account_link__customer=customer)
                         .select_related("service", "plan", "account_link").order_by("status", "external_id"))
    views = [_subscription_view(s) for s in subscriptions]
    events: list[UsageEvent] = []
    for sub in subscriptions:
        events.extend(UsageEvent.objects.filter(subscription=sub).order_by("-timestamp")[:RECENT_EVENTS])
    events.sort(key=lambda e: e.timestamp, reverse=True)
    invoices = [(i, money_display(i.total_amount, i.currency))
                for i in Invoice.objects.filter(customer=customer).order_by("-issuing_date", "-created_at")[:50]]
    chart: dict[str, Any] = {"labels": [], "series": [{"label": "current window", "data": []},
                                                      {"label": "previous window", "data": []}]}
    for view in views:
        for line in view.charges:
            chart["labels"].append(f"{view.subscription.external_id} · {line.metric}")
            chart["series"][0]["data"].append(line.current_units_value)
            chart["series"][1]["data"].append(line.previous_units_value)
    return CustomerPage(customer, customer_display(customer), links, views, events[:RECENT_EVENTS], invoices,
                        _deliveries_for(links, subscriptions), chart, odoo_partner_url(customer))


def odoo_partner_url(customer: Customer) -> str:
    """The partner's form in Odoo's web client, when Odoo is configured and the partner pushed."""
    partner_id = getattr(customer, "odoo_partner_id", None)
    base = str(getattr(settings, "ODOO_URL", "") or "").rstrip("/")
    if not partner_id or not base:
        return ""
    return f"{base}/web#id={int(partner_id)}&model=res.partner&view_type=form"


def _deliveries_for(links: list[AccountLink], subscriptions: list[Subscription]) -> list[WebhookDelivery]:
    """Deliveries of recent webhooks about this customer's objects: the event body names
    them by their external ids (bodies are opaque bytes, so the recent ones are scanned)."""
    needles = {f'"{link.external_id}"' for link in links} | {f'"{s.external_id}"' for s in subscriptions}
    service_ids = {link.service_id for link in links}
    if not needles or not service_ids:
        return []
    matched = []
    for event in WebhookEvent.objects.filter(service_id__in=service_ids).order_by("-created_at")[:WEBHOOK_SCAN]:
        body = bytes(event.body).decode("utf-8", errors="replace")
        if any(needle in body for needle in needles):
            matched.append(event.pk)
    return list(WebhookDelivery.objects.filter(event_id__in=matched).select_related("event", "endpoint")
                .order_by("-created_at")[:50])


def chart_json(charts: list[Chart]) -> str:
    return json.dumps([c.as_dict() for c in charts])


def open_subscriptions_of(customer: Customer) -> list[Subscription]:
    return list(Subscription.objects.filter(account_link__customer=customer)
                .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES).select_related("service", "plan"))
