"""Pure-Django writer of the NexaCloud import.

It takes the typed rows of ``migration.reader`` (or any iterables of them, which
is how it is tested without a source database) and writes, for the ``nexacloud``
service:

- plans  -> one Plan per billing cycle that has a price (NULL = not sold on that
  cycle, never $0), each with the ``cpu_seconds`` charge: standard model,
  included quota = ``cpu_seconds_quota``, CAD 0.0075 per batch of 3,600 units;
- users (not deleted) -> Customer (matched case-insensitively by email, else
  created) + AccountLink (external id = user id) carrying the profile and the
  stashed ``stripe_customer_id`` (the account's own);
- deployments (not deleted) -> shadow Subscriptions on the plan of their cycle,
  flat price set explicitly, window = [current_period_start, current_period_end);
  an unknown cycle, a cycle without a price or an unknown user fails the row;
- usage_hourly -> UsageEvents with a deterministic ``transaction_id`` per
  deployment and hour, inserted set-based with ON CONFLICT DO NOTHING.

Every source row is written inside its own savepoint, so one bad row never
spoils the others; failures are collected (entity, key, exception type,
message, traceback) and logged at ERROR. Re-runs create nothing new and only
rewrite mirror fields (see ``docs/migration.md``).
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from itertools import islice
from typing import Protocol, TypeVar

from django.db import connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone as dj_timezone

from identity.models import AccountLink, Customer, Service
from identity.services import allocate_account_number
from metering.event_schema import event_payload_hash
from metering.services.subscriptions import invoice_grace_of
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    AggregationType,
    BillableMetric,
    BillingTime,
    Charge,
    ChargeModel,
    Plan,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
    UsageEvent,
    UsageEventKey,
)
from migration.models import empty_counts
from migration.reader import SourceDeployment, SourcePlan, SourceUsageHour, SourceUser

logger = logging.getLogger("migration.import")

SERVICE_CODE = "nexacloud"
METRIC_CODE = "cpu_seconds"
RATE_PER_CORE_HOUR = Decimal("0.0075")
UNIT_BATCH = Decimal(3600)
# Source billing_cycle -> (Plan.interval, SourcePlan attribute holding the price).
CYCLES: dict[str, str] = {"monthly": "price_monthly", "yearly": "price_yearly"}
ROW_CHUNK = 1000
USAGE_CHUNK = 5000

ProgressCallback = Callable[[str, int], None]
T = TypeVar("T")


# ----------------------------------------------------------------------------- errors
class ServiceMissing(Exception):
    """The ``nexacloud`` Service does not exist: nothing can be imported."""


class RowRejected(Exception):
    """A source row that cannot be imported as it is (bad data)."""


class UnknownBillingCycle(RowRejected):
    pass


class PriceNotSoldOnCycle(RowRejected):
    pass


class UnknownUser(RowRejected):
    pass


class UnknownPlan(RowRejected):
    pass


# ----------------------------------------------------------------------------- report
@dataclass(frozen=True)
class RowFailure:
    entity: str
    key: str
    exception_type: str
    message: str
    traceback: str


@dataclass
class ImportReport:
    counts: dict[str, dict[str, int]] = field(default_factory=empty_counts)
    failures: list[RowFailure] = field(default_factory=list)

    def add(self, entity: str, key: str, n: int = 1) -> None:
        self.counts[entity][key] += n

    def total(self, key: str) -> int:
        return sum(c[key] for c in self.counts.values())

    def fail(self, entity: str, key: str, exc: BaseException) -> None:
        self.add(entity, "failed")
        tb = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
        failure = RowFailure(entity=entity, key=key, exception_type=type(exc).__name__,
                             message=str(exc), traceback=tb)
        self.failures.append(failure)
        # ERROR: survives a production log level of WARNING (a partial import must be loud).
        logger.error("NexaCloud import: %s %s failed: %s: %s", entity, key, failure.exception_type,
                     failure.message, exc_info=(type(exc), exc, exc.__traceback__))


class Source(Protocol):
    def plans(self) -> Iterable[SourcePlan]: ...
    def users(self) -> Iterable[SourceUser]: ...
    def deployments(self) -> Iterable[SourceDeployment]: ...
    def usage_hours(self, *, before: datetime | None = None) -> Iterable[SourceUsageHour]: ...


@dataclass
class StaticSource:
    """An in-memory source (tests, fixtures)."""

    plan_rows: list[SourcePlan] = field(default_factory=list)
    user_rows: list[SourceUser] = field(default_factory=list)
    deployment_rows: list[SourceDeployment] = field(default_factory=list)
    usage_rows: list[SourceUsageHour] = field(default_factory=list)

    def plans(self) -> Iterable[SourcePlan]:
        return iter(self.plan_rows)

    def users(self) -> Iterable[SourceUser]:
        return iter(self.user_rows)

    def deployments(self) -> Iterable[SourceDeployment]:
        return iter(self.deployment_rows)

    def usage_hours(self, *, before: datetime | None = None) -> Iterable[SourceUsageHour]:
        return (u for u in self.usage_rows if before is None or u.hour_start < before)


# ----------------------------------------------------------------------------- helpers
def get_import_service(code: str = SERVICE_CODE) -> Service:
    try:
        return Service.objects.get(code=code)
    except Service.DoesNotExist:
        raise ServiceMissing(
            f"The {code!r} service does not exist; create it first "
            f"(python manage.py create_service {code} ...)."
        ) from None


def plan_code_for(source_code: str, cycle: str) -> str:
    """The monthly plan keeps NexaCloud's shared plan_code; other cycles get a suffix."""
    return source_code if cycle == "monthly" else f"{source_code}-{cycle}"


def day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=timezone.utc)


def usage_transaction_id(deployment_id: str, hour_start: datetime) -> str:
    """Deterministic per deployment and hour: a re-run inserts the same key again."""
    return f"nc-{deployment_id}-{hour_start.astimezone(timezone.utc):%Y%m%dT%H%M}"


def usage_payload_hash(*, hour_start: datetime, cpu_seconds: int) -> str:
    """The ingest API's own fingerprint of this hour sent as an event, so NexaCloud
    re-sending it through the API is recognised as an identical resend."""
    return event_payload_hash(code=METRIC_CODE, timestamp=hour_start,
                              properties={METRIC_CODE: cpu_seconds}, precise_total_amount_cents=None)


def chunked(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def subscriptions_by_external_id(*, service: Service, external_ids: Iterable[str],
                                 related: tuple[str, ...] = ()) -> dict[str, Subscription]:
    """The subscription behind each external id: an open one wins over an older terminated one."""
    subs: dict[str, Subscription] = {}
    for sub in (Subscription.objects.filter(service=service, external_id__in=list(external_ids))
                .select_related(*related).order_by("created_at")):
        if sub.external_id not in subs or sub.status not in CLOSED_SUBSCRIPTION_STATUSES:
            subs[sub.external_id] = sub
    return subs


def _set_if_changed(obj: object, **values: object) -> list[str]:
    changed = []
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def _create_cpu_charge(*, plan: Plan, metric: BillableMetric, quota: Decimal) -> Charge:
    return Charge.objects.create(plan=plan, metric=metric, charge_model=ChargeModel.STANDARD,
                                 amount=RATE_PER_CORE_HOUR, unit_batch=UNIT_BATCH, free_units=quota,
                                 invoice_display_name="CPU (core-hours)")


# ----------------------------------------------------------------------------- writer
class NexaCloudWriter:
    """Writes one import into the current transaction; see the module docstring."""

    def __init__(self, *, service: Service, report: ImportReport | None = None,
                 progress: ProgressCallback | None = None):
        self.service = service
        self.report = report or ImportReport()
        self.progress = progress or (lambda phase, processed: None)
        self.source_plans: dict[int, SourcePlan] = {}
        self.plans_by_code: dict[str, Plan] = {}
        self.deleted_user_ids: set[str] = set()

    # -- row isolation ---------------------------------------------------------------
    def _row(self, entity: str, key: str, write: Callable[[], str]) -> None:
        """Run ``write`` in its own savepoint; it returns the count key to bump."""
        try:
            with transaction.atomic():
                outcome = write()
        except Exception as exc:  # one bad row must never spoil the others
            self.report.fail(entity, key, exc)
        else:
            self.report.add(entity, outcome)

    # -- plans -------------------------------------------------------------------------
    def metric(self) -> BillableMetric:
        metric, _ = BillableMetric.objects.get_or_create(
            service=self.service, code=METRIC_CODE,
            defaults={"name": "CPU seconds", "aggregation_type": AggregationType.SUM,
                      "field_name": METRIC_CODE,
                      "description": "CPU time consumed, in seconds (NexaCloud usage_hourly)."},
        )
        return metric

    def import_plans(self, plans: Iterable[SourcePlan]) -> None:
        metric = self.metric()
        processed = 0
        for plan in plans:
            self.source_plans[plan.id] = plan
            priced = [(cycle, getattr(plan, attr)) for cycle, attr in CYCLES.items()
                      if getattr(plan, attr) is not None]
            if not priced:
                self.report.add("plans", "skipped")  # sold on no cycle at all
            for cycle, price in priced:
                code = plan_code_for(plan.code, cycle)
                self._row("plans", code, lambda: self._write_plan(plan, cycle, price, code, metric))
            processed += 1
        self.progress("plans", processed)

    def _write_plan(self, plan: SourcePlan, cycle: str, price: Decimal, code: str,
                    metric: BillableMetric) -> str:
        name = plan.name if cycle == "monthly" else f"{plan.name} ({cycle})"
        existing = Plan.objects.filter(service=self.service, code=code).first()
        quota = Decimal(plan.cpu_seconds_quota)
        if existing is None:
            fusion_plan = Plan.objects.create(
                service=self.service, code=code, name=name, interval=cycle, amount=price,
                amount_currency=plan.currency,
                description=f"Imported from NexaCloud plan {plan.code} ({cycle}).",
            )
            _create_cpu_charge(plan=fusion_plan, metric=metric, quota=quota)
            self.plans_by_code[code] = fusion_plan
            return "created"
        self.plans_by_code[code] = existing
        changed = _set_if_changed(existing, name=name, amount=price)
        if changed:
            existing.save(update_fields=[*changed, "updated_at"])
        charge = Charge.objects.filter(plan=existing, metric=metric).first()
        if charge is None:
            _create_cpu_charge(plan=existing, metric=metric, quota=quota)
            changed.append("charge")
        else:
            charge_changed = _set_if_changed(charge, free_units=quota)
            if charge_changed:
                charge.save(update_fields=[*charge_changed, "updated_at"])
                changed.extend(charge_changed)
        return "updated" if changed else "unchanged"

    # -- users ---------------------------------------------------------------------------
    def import_users(self, users: Iterable[SourceUser]) -> None:
        processed = 0
        customers_by_email: dict[str, Customer] = {}
        for chunk in chunked(users, ROW_CHUNK):
            links = {
                link.external_id: link
                for link in AccountLink.objects.filter(
                    service=self.service, external_id__in=[u.id for u in chunk]
                ).select_related("customer")
            }
            wanted = {u.email.strip().lower() for u in chunk if u.email and u.email.strip()}
            wanted -= customers_by_email.keys()
            if wanted:
                for customer in Customer.objects.annotate(email_ci=Lower("email")).filter(email_ci__in=wanted):
                    customers_by_email[customer.email_ci] = customer
            for user in chunk:
                self._row("users", user.id, lambda: self._write_user(user, links.get(user.id), customers_by_email))
            processed += len(chunk)
            self.progress("users", processed)

    def _write_user(self, user: SourceUser, link: AccountLink | None,
                    customers_by_email: dict[str, Customer]) -> str:
        email = (user.email or "").strip()
        if user.deleted_at is not None:
            self.deleted_user_ids.add(user.id)
            if link is not None and link.deleted_at is None:
                link.deleted_at = user.deleted_at
                link.save(update_fields=["deleted_at", "updated_at"])
                return "updated"
            return "skipped" if link is None else "unchanged"
        if link is None:
            key = email.lower()
            customer = customers_by_email.get(key) if key else None
            if customer is None:
                customer = Customer.objects.create(email=email)
            # The profile and the Stripe customer are this service's account's own (another
            # service's account of the same client never bills with them).
            sequential_id, slug = allocate_account_number(service=self.service)
            AccountLink.objects.create(service=self.service, external_id=user.id, external_email=email,
                                       customer=customer, sequential_id=sequential_id, slug=slug,
                                       name=user.full_name or email, legal_name=user.company or "",
                                       currency=self.service.default_currency,
                                       stripe_customer_id=user.stripe_customer_id or "")
            if key:  # cached only once the row's writes succeeded (a rolled-back one is gone)
                customers_by_email[key] = customer
            return "created"
        # Mirror fields only; the customer of a link is never changed by a re-run.
        changed = _set_if_changed(link, external_email=email, deleted_at=None)
        if changed:
            link.save(update_fields=[*changed, "updated_at"])
        if user.stripe_customer_id and not link.stripe_customer_id:
            link.stripe_customer_id = user.stripe_customer_id
            link.save(update_fields=["stripe_customer_id", "updated_at"])
            changed.append("stripe_customer_id")
        return "updated" if changed else "unchanged"

    # -- deployments ----------------------------------------------------------------------
    def _fusion_plan(self, code: str) -> Plan | None:
        if code not in self.plans_by_code:
            plan = Plan.objects.filter(service=self.service, code=code).first()
            if plan is None:
                return None
            self.plans_by_code[code] = plan
        return self.plans_by_code[code]

    def import_deployments(self, deployments: Iterable[SourceDeployment]) -> None:
        processed = 0
        for chunk in chunked(deployments, ROW_CHUNK):
            links = {
                link.external_id: link
                for link in AccountLink.objects.filter(
                    service=self.service, external_id__in={d.user_id for d in chunk}
                )
            }
            existing = subscriptions_by_external_id(service=self.service, external_ids=[d.id for d in chunk])
            for dep in chunk:
                self._row("deployments", dep.id,
                          lambda: self._write_deployment(dep, links.get(dep.user_id), existing.get(dep.id)))
            processed += len(chunk)
            self.progress("deployments", processed)

    def _write_deployment(self, dep: SourceDeployment, link: AccountLink | None,
                          existing: Subscription | None) -> str:
        if existing is not None:
            return self._mirror_deployment(dep, existing)
        if dep.status == "deleted":
            return "skipped"
        if dep.billing_cycle not in CYCLES:
            raise UnknownBillingCycle(
                f"deployment {dep.id}: unknown billing_cycle {dep.billing_cycle!r} "
                f"(expected one of {', '.join(CYCLES)})"
            )
        source_plan = self.source_plans.get(dep.plan_id)
        if source_plan is None:
            raise UnknownPlan(f"deployment {dep.id}: plan {dep.plan_id} does not exist in NexaCloud")
        price = getattr(source_plan, CYCLES[dep.billing_cycle])
        if price is None:
            raise PriceNotSoldOnCycle(
                f"deployment {dep.id}: plan {source_plan.code!r} has no {dep.billing_cycle} price "
                f"(NULL means not sold {dep.billing_cycle}, not free)"
            )
        if dep.user_id in self.deleted_user_ids or (link is not None and link.deleted_at is not None):
            return "skipped"  # the owner was deleted in NexaCloud
        if link is None:
            raise UnknownUser(f"deployment {dep.id}: user {dep.user_id} is not in NexaCloud or failed to "
                              "import (orphan deployment)")
        plan = self._fusion_plan(plan_code_for(source_plan.code, dep.billing_cycle))
        if plan is None:
            raise UnknownPlan(f"deployment {dep.id}: plan {source_plan.code!r} was not imported")
        start, end = day_start(dep.current_period_start), day_start(dep.current_period_end)
        Subscription.objects.create(
            service=self.service, account_link=link, external_id=dep.id, name=dep.name, plan=plan,
            status=SubscriptionStatus.ACTIVE, mode=SubscriptionMode.SHADOW,
            billing_time=BillingTime.ANNIVERSARY, subscription_at=dep.created_at,
            started_at=dep.created_at, billing_anchor=start,
            current_period_start=start, current_period_end=end,
            flat_amount=price, currency=source_plan.currency, grace_period=invoice_grace_of(link),
        )
        return "created"

    def _mirror_deployment(self, dep: SourceDeployment, sub: Subscription) -> str:
        """Re-run: only mirror fields move. Customer, plan and flat price are set at
        creation only; a live subscription belongs to Fusion Billing and is left alone."""
        if sub.mode == SubscriptionMode.LIVE or sub.status in CLOSED_SUBSCRIPTION_STATUSES:
            return "unchanged"
        if dep.status == "deleted":
            sub.status = SubscriptionStatus.TERMINATED
            sub.terminated_at = dj_timezone.now()
            sub.save(update_fields=["status", "terminated_at", "updated_at"])
            return "updated"
        values: dict[str, object] = {"name": dep.name}
        start, end = day_start(dep.current_period_start), day_start(dep.current_period_end)
        # The window only moves forward: rating may already have closed a period.
        if sub.current_period_start is None or start > sub.current_period_start:
            values.update(current_period_start=start, current_period_end=end)
        changed = _set_if_changed(sub, **values)
        if changed:
            sub.save(update_fields=[*changed, "updated_at"])
        return "updated" if changed else "unchanged"

    # -- usage -----------------------------------------------------------------------------
    def import_usage(self, usage: Iterable[SourceUsageHour], *, chunk_size: int = USAGE_CHUNK) -> None:
        # Shadow only: once live, usage arrives through the API and the source's
        # counters must not be added a second time.
        targets = {
            external_id: sub_id
            for external_id, sub_id in Subscription.objects.filter(service=self.service, mode=SubscriptionMode.SHADOW)
            .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
            .values_list("external_id", "id")
        }
        table, keys = UsageEvent._meta.db_table, UsageEventKey._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS migration_usage_stage ("
                " subscription_id uuid, external_subscription_id text, transaction_id text,"
                " ts timestamptz, cpu_seconds bigint, payload_hash text) ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE migration_usage_stage")
        # The key table holds the events' uniqueness (the events table is partitioned by
        # month, see metering.models.UsageEventKey): claim the new keys, store their events.
        insert_sql = (
            f"WITH new_keys AS (INSERT INTO {keys} (service_id, transaction_id, external_subscription_id,"
            " event_id, timestamp, payload_hash)"
            f" SELECT %s, transaction_id, external_subscription_id, nextval('{table}_id_seq'), ts, payload_hash"
            " FROM migration_usage_stage ON CONFLICT DO NOTHING"
            " RETURNING transaction_id, external_subscription_id, event_id)"
            f" INSERT INTO {table} (id, service_id, subscription_id, external_subscription_id, code,"
            " transaction_id, timestamp, properties, value, payload_hash, created_at)"
            " SELECT k.event_id, %s, st.subscription_id, st.external_subscription_id, %s, st.transaction_id, st.ts,"
            " jsonb_build_object(%s, st.cpu_seconds), st.cpu_seconds, st.payload_hash, now()"
            " FROM new_keys k JOIN migration_usage_stage st ON st.transaction_id = k.transaction_id"
            " AND st.external_subscription_id = k.external_subscription_id"
        )
        processed = 0
        for chunk in chunked(usage, chunk_size):
            rows = []
            for hour in chunk:
                sub_id = targets.get(hour.deployment_id)
                if sub_id is None:
                    self.report.add("usage", "skipped")  # deployment not imported, deleted, or already live
                    continue
                rows.append((sub_id, hour.deployment_id, usage_transaction_id(hour.deployment_id, hour.hour_start),
                             hour.hour_start, hour.cpu_seconds,
                             usage_payload_hash(hour_start=hour.hour_start, cpu_seconds=hour.cpu_seconds)))
            if rows:
                try:
                    with transaction.atomic():
                        created = self._insert_usage(rows, insert_sql)
                    self.report.add("usage", "created", created)
                    self.report.add("usage", "unchanged", len(rows) - created)
                except Exception:
                    # One bad row in the batch: redo it row by row to isolate the culprit.
                    for row in rows:
                        self._row("usage", row[2], lambda: "created" if self._insert_usage([row], insert_sql) else "unchanged")
            processed += len(chunk)
            self.progress("usage", processed)

    def _insert_usage(self, rows: list[tuple], insert_sql: str) -> int:
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg 3 cursor: COPY is the fast way in
            with raw.copy(
                "COPY migration_usage_stage (subscription_id, external_subscription_id, transaction_id,"
                " ts, cpu_seconds, payload_hash) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(insert_sql, [self.service.pk, self.service.pk, METRIC_CODE, METRIC_CODE])
            created = cursor.rowcount
            cursor.execute("TRUNCATE migration_usage_stage")
        return created


def usage_cutoff(now: datetime | None = None) -> datetime:
    """Only complete hours are imported: the hour in progress is still counting."""
    now = now or dj_timezone.now()
    return now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def write_import(*, service: Service, source: Source, dry_run: bool = False,
                 progress: ProgressCallback | None = None, now: datetime | None = None) -> ImportReport:
    """The whole import in one transaction (rolled back on a dry run, so a dry run
    reports exactly the counts the real run would produce and leaves nothing)."""
    report = ImportReport()
    writer = NexaCloudWriter(service=service, report=report, progress=progress)
    with transaction.atomic():
        writer.import_plans(source.plans())
        writer.import_users(source.users())
        writer.import_deployments(source.deployments())
        writer.import_usage(source.usage_hours(before=usage_cutoff(now)))
        if dry_run:
            transaction.set_rollback(True)
    return report
