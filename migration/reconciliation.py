"""Reconciliation: what Fusion Billing would bill against what NexaCloud billed.

For every row of NexaCloud's ``billed_periods`` (one deployment, one closed
period) and every Fusion subscription period NexaCloud did not bill, one
``Reconciliation`` row is upserted, keyed by (service, external subscription id,
period start) — never by customer: two deployments of one customer are two rows.

- Fusion amount  = the subscription's flat amount + rated usage over the window
  ``[period_start, period_end)`` from ``metering.rating.compute_usage`` (6 dp);
- source amount  = ``flat_amount + overage_amount`` (4 dp, NexaCloud's own rule);
- ``delta = fusion - source``; ``match`` when ``|delta| <= tolerance``
  (``MIGRATION_RECONCILIATION_TOLERANCE``, default CAD 0.01), else ``mismatch``;
  ``missing_in_fusion`` when NexaCloud billed a deployment Fusion has no
  subscription for; ``missing_in_source`` when a Fusion subscription has a
  closed window NexaCloud did not bill.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import IO

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from billing_kit.spreadsheet import csv_row
from identity.models import Service
from metering.models import CLOSED_SUBSCRIPTION_STATUSES, Subscription
from metering.rating import compute_usage
from metering.windows import subscription_window
from migration.models import NEEDS_POSTGRESQL, Reconciliation, ReconciliationStatus
from migration.reader import NexaCloudReader, SourceBilledPeriod
from migration.writer import chunked, day_start, subscriptions_by_external_id

SIX_DP = Decimal("0.000001")
FOUR_DP = Decimal("0.0001")
UPSERT_BATCH = 1000
CSV_COLUMNS = ("service", "external_subscription_id", "period_start", "period_end",
               "fusion_amount", "source_amount", "delta", "status")
SOURCE_READERS = {"nexacloud": NexaCloudReader}


class ReconciliationUnavailable(Exception):
    """The service has no source to reconcile against (or it is unreachable)."""


def default_tolerance() -> Decimal:
    return settings.MIGRATION_RECONCILIATION_TOLERANCE


# ----------------------------------------------------------------------------- Fusion side
def fusion_usage(*, subscription: Subscription, window_start: datetime, window_end: datetime) -> tuple[Decimal, Decimal]:
    """(rated usage amount at 6 dp, units) over the window, read-only."""
    result = compute_usage(subscription=subscription, window_start=window_start, window_end=window_end)
    units = sum((c.units for c in result.charges), Decimal(0))
    return result.amount.quantize(SIX_DP, rounding=ROUND_HALF_UP), units


# ----------------------------------------------------------------------------- result
@dataclass
class ReconcileResult:
    counts: Counter = field(default_factory=Counter)
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return {status: self.counts.get(status, 0) for status in ReconciliationStatus.values}


def _classify(*, fusion: Decimal, source: Decimal, tolerance: Decimal) -> tuple[Decimal, str]:
    delta = (fusion - source).quantize(SIX_DP)
    return delta, (ReconciliationStatus.MATCH if abs(delta) <= tolerance else ReconciliationStatus.MISMATCH)


def _closed_window_starting(sub: Subscription, period_start: date, now: datetime) -> tuple[datetime, datetime] | None:
    """The subscription's window that starts exactly at ``period_start`` if it is closed."""
    if sub.started_at is None or sub.plan.interval not in ("weekly", "monthly", "quarterly", "yearly"):
        return None
    at = day_start(period_start)
    if sub.started_at > at + timedelta(days=1):
        return None
    start, end = subscription_window(interval=sub.plan.interval, billing_time=sub.billing_time,
                                     started_at=min(sub.started_at, at), at=at, anchor=sub.billing_anchor)
    if start != at or end > now:
        return None
    if sub.terminated_at is not None and sub.terminated_at <= start:
        return None
    return start, end


def reconcile_rows(*, service: Service, billed: Iterable[SourceBilledPeriod], period_start: date | None = None,
                   tolerance: Decimal | None = None, now: datetime | None = None) -> ReconcileResult:
    """Upsert one Reconciliation per billed row, plus ``missing_in_source`` rows."""
    tolerance = default_tolerance() if tolerance is None else tolerance
    now = now or timezone.now()
    result = ReconcileResult()
    seen: set[tuple[str, date]] = set()
    periods: set[date] = {period_start} if period_start else set()
    pending: list[Reconciliation] = []

    def flush() -> None:
        if pending:
            Reconciliation.objects.bulk_create(
                pending, batch_size=UPSERT_BATCH, update_conflicts=True,
                unique_fields=["service", "external_subscription_id", "period_start"],
                update_fields=[f.name for f in Reconciliation._meta.concrete_fields
                               if f.name not in ("id", "service", "external_subscription_id", "period_start")],
            )
            pending.clear()

    def add(row: Reconciliation) -> None:
        row.tolerance = tolerance
        row.checked_at = now
        pending.append(row)
        result.counts[row.status] += 1
        result.rows += 1
        if len(pending) >= UPSERT_BATCH:
            flush()

    with transaction.atomic():
        # Billed rows and subscriptions stream in chunks: memory stays bounded.
        for chunk in chunked((b for b in billed if not period_start or b.period_start == period_start),
                             UPSERT_BATCH):
            subs = subscriptions_by_external_id(service=service, external_ids={b.deployment_id for b in chunk},
                                                related=("plan", "account_link"))
            for bill in chunk:
                seen.add((bill.deployment_id, bill.period_start))
                periods.add(bill.period_start)
                source_amount = (bill.flat_amount + bill.overage_amount).quantize(FOUR_DP)
                row = Reconciliation(
                    service=service, external_subscription_id=bill.deployment_id,
                    period_start=bill.period_start, period_end=bill.period_end, currency=bill.currency,
                    source_flat_amount=bill.flat_amount, source_overage_amount=bill.overage_amount,
                    source_amount=source_amount, source_cpu_seconds=bill.cpu_seconds,
                )
                sub = subs.get(bill.deployment_id)
                if sub is None:
                    row.status = ReconciliationStatus.MISSING_IN_FUSION
                else:
                    usage, units = fusion_usage(subscription=sub, window_start=day_start(bill.period_start),
                                                window_end=day_start(bill.period_end))
                    row.subscription, row.customer_id = sub, sub.account_link.customer_id
                    row.fusion_flat_amount = sub.flat_amount.quantize(SIX_DP)
                    row.fusion_usage_amount = usage
                    row.fusion_amount = (sub.flat_amount + usage).quantize(SIX_DP)
                    row.fusion_units = units
                    row.delta, row.status = _classify(fusion=row.fusion_amount, source=source_amount,
                                                      tolerance=tolerance)
                add(row)
        all_subs = Subscription.objects.filter(service=service).select_related("plan", "account_link")
        open_subs = all_subs.exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
        if not period_start:
            # Each open subscription's latest closed window is due a NexaCloud bill too.
            for sub in open_subs.filter(current_period_start__isnull=False).iterator(chunk_size=2000):
                assert sub.current_period_start is not None  # NULLs are filtered out above
                previous = sub.current_period_start - timedelta(microseconds=1)
                if sub.started_at is not None and sub.started_at <= previous:
                    start, _ = subscription_window(
                        interval=sub.plan.interval, billing_time=sub.billing_time,
                        started_at=sub.started_at, at=previous, anchor=sub.billing_anchor)
                    periods.add(start.date())
        ordered_periods = sorted(periods)
        # Open subscriptions first: for an external id they win over a terminated predecessor.
        for subs_query in (open_subs, all_subs.filter(status__in=CLOSED_SUBSCRIPTION_STATUSES)):
            for sub in subs_query.order_by("external_id", "created_at").iterator(chunk_size=2000):
                for period in ordered_periods:
                    if (sub.external_id, period) in seen:
                        continue
                    window = _closed_window_starting(sub, period, now)
                    if window is None:
                        continue
                    seen.add((sub.external_id, period))
                    usage, units = fusion_usage(subscription=sub, window_start=window[0], window_end=window[1])
                    add(Reconciliation(
                        service=service, external_subscription_id=sub.external_id, period_start=period,
                        period_end=window[1].date(), subscription=sub, customer_id=sub.account_link.customer_id,
                        currency=sub.currency, fusion_flat_amount=sub.flat_amount.quantize(SIX_DP),
                        fusion_usage_amount=usage, fusion_amount=(sub.flat_amount + usage).quantize(SIX_DP),
                        fusion_units=units, status=ReconciliationStatus.MISSING_IN_SOURCE,
                    ))
        flush()
    return result


def reconcile_service(*, service_code: str = "nexacloud", period_start: date | None = None,
                      dsn: str | None = None, tolerance: Decimal | None = None,
                      now: datetime | None = None) -> ReconcileResult:
    """Read ``billed_periods`` from the service's source and reconcile (read-only on the source)."""
    if connection.vendor != "postgresql":  # only imported (shadow) subscriptions can match; see README
        raise ReconciliationUnavailable(NEEDS_POSTGRESQL)
    try:
        service = Service.objects.get(code=service_code)
    except Service.DoesNotExist:
        raise ReconciliationUnavailable(f"The {service_code!r} service does not exist.") from None
    reader_class = SOURCE_READERS.get(service_code)
    if reader_class is None:
        raise ReconciliationUnavailable(f"No billing source to reconcile {service_code!r} against "
                                        f"(known: {', '.join(SOURCE_READERS)}).")
    dsn = dsn if dsn is not None else (settings.NEXACLOUD_DSN or None)
    with reader_class(dsn) as reader:
        return reconcile_rows(service=service, billed=reader.billed_periods(period_start=period_start),
                              period_start=period_start, tolerance=tolerance, now=now)


def write_csv(rows: Iterable[Reconciliation], stream: IO[str]) -> int:
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for r in rows:
        # csv_row: an external id such as "=HYPERLINK(...)" must not run in a spreadsheet.
        writer.writerow(csv_row([r.service.code, r.external_subscription_id, r.period_start.isoformat(),
                                 r.period_end.isoformat(), r.fusion_amount, r.source_amount, r.delta,
                                 r.status]))
        n += 1
    return n


def totals_by_period(queryset) -> list[dict]:
    """Per period: fusion and source totals, delta, and counts per status."""
    return list(
        queryset.values("period_start")
        .annotate(
            rows=Count("id"),
            fusion_total=Sum("fusion_amount"),
            source_total=Sum("source_amount"),
            delta_total=Sum("delta"),
            **{status: Count("id", filter=Q(status=status)) for status in ReconciliationStatus.values},
        )
        .order_by("-period_start")
    )
