"""Writes of the metering catalogue, subscriptions and usage events.

Every function takes the calling ``service`` and only ever touches that service's rows.
Failures are raised as the API kit's Lago-shaped errors so that views stay thin.
"""
from __future__ import annotations

import json

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import DatabaseError, IntegrityError, connection, transaction
from psycopg import Error as PsycopgError
from django.db.models import ProtectedError, QuerySet
from django.utils import timezone

from billing_kit.errors import NotAllowed, NotFound, ValidationFailed
from identity.models import AccountLink, Service
from identity import services as identity_services
from metering import windows
from metering.event_schema import ParsedEvent, numeric_property_error, parse_numeric
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    BillableMetric,
    Charge,
    ChargeTier,
    Plan,
    RatedUsage,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
    UsageEvent,
)
from metering.pricing import ChargePropertiesInvalid, charge_columns, parse_charge_properties
from metering.rating import is_period_closed, lock_subscriptions_for_ingest
from metering.renderers import render_subscription
from metering.selectors import charges_prefetch, get_plan
from webhooks.services import record_event

# UsageEvent.value is numeric(38, 10).
_MAX_EVENT_VALUE = Decimal(10) ** 28


# --------------------------------------------------------------------------- webhooks


def _emit_subscription(subscription: Subscription, webhook_type: str) -> None:
    record_event(service=subscription.service, webhook_type=webhook_type, object_type="subscription",
                 payload=render_subscription(subscription))


# --------------------------------------------------------------------------- billable metrics


def _check_metric(*, aggregation_type: str, field_name: str, recurring: bool) -> None:
    errors: dict[str, list[str]] = {}
    if aggregation_type != "count_agg" and not field_name:
        errors["field_name"] = ["value_is_mandatory"]
    if recurring and aggregation_type in ("count_agg", "max_agg", "latest_agg"):
        errors["recurring"] = ["not_compatible_with_aggregation_type"]
    if errors:
        raise ValidationFailed(errors)


def create_billable_metric(*, service: Service, data: dict[str, Any]) -> BillableMetric:
    field_name = "" if data["aggregation_type"] == "count_agg" else (data.get("field_name") or "")
    recurring = bool(data.get("recurring") or False)
    _check_metric(aggregation_type=data["aggregation_type"], field_name=field_name, recurring=recurring)
    try:
        with transaction.atomic():
            return BillableMetric.objects.create(
                service=service, code=data["code"], name=data["name"],
                description=data.get("description") or "", aggregation_type=data["aggregation_type"],
                field_name=field_name, recurring=recurring,
            )
    except IntegrityError:
        raise ValidationFailed({"code": ["value_already_exist"]}) from None


def update_billable_metric(*, metric: BillableMetric, data: dict[str, Any]) -> BillableMetric:
    for field in ("name", "code", "aggregation_type", "recurring"):
        if data.get(field) is not None:
            setattr(metric, field, data[field])
    if "description" in data:
        metric.description = data["description"] or ""
    if "field_name" in data:
        metric.field_name = data["field_name"] or ""
    if metric.aggregation_type == "count_agg":
        metric.field_name = ""
    _check_metric(aggregation_type=metric.aggregation_type, field_name=metric.field_name,
                  recurring=metric.recurring)
    try:
        with transaction.atomic():
            metric.save()
    except IntegrityError:
        raise ValidationFailed({"code": ["value_already_exist"]}) from None
    return metric


@transaction.atomic
def delete_billable_metric(*, metric: BillableMetric) -> None:
    """Lago deletes the metric with its charges; here only while nothing was billed with it."""
    charges = Charge.objects.filter(metric=metric)
    if (RatedUsage.objects.filter(charge__in=charges).exists()
            or Subscription.objects.filter(plan__charges__metric=metric)
            .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES).exists()):
        raise NotAllowed("billable_metric_in_use")
    charges.delete()
    metric.delete()


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class ChargeSpec:
    metric: BillableMetric
    fields: dict[str, Any]
    tiers: list[dict[str, Any]]


def _resolve_charges(*, service: Service, charges: list[dict[str, Any]]) -> list[ChargeSpec]:
    """Validate Lago charges: metrics of this service only, properties via metering.pricing."""
    wanted_ids: set[UUID] = set()
    wanted_codes: set[str] = set()
    for charge in charges:
        if charge.get("billable_metric_id"):
            wanted_ids.add(charge["billable_metric_id"])
        elif charge.get("billable_metric_code"):
            wanted_codes.add(charge["billable_metric_code"])
        else:
            raise ValidationFailed({"billable_metric_id": ["value_is_mandatory"]})
    metrics = BillableMetric.objects.filter(service=service)
    by_id = {m.id: m for m in metrics.filter(id__in=wanted_ids)} if wanted_ids else {}
    by_code = {m.code: m for m in metrics.filter(code__in=wanted_codes)} if wanted_codes else {}
    specs: list[ChargeSpec] = []
    errors: dict[str, list[str]] = {}
    seen: set[UUID] = set()
    for charge in charges:
        metric = (by_id.get(charge["billable_metric_id"]) if charge.get("billable_metric_id")
                  else by_code.get(charge.get("billable_metric_code")))
        if metric is None:
            raise NotFound("billable_metric_not_found")
        if metric.id in seen:
            errors.setdefault("charges", []).append("value_already_exist")
            continue
        seen.add(metric.id)
        if charge.get("pay_in_advance"):
            errors.setdefault("pay_in_advance", []).append("not_supported")
        try:
            terms = parse_charge_properties(charge_model=charge.get("charge_model"),
                                            properties=charge.get("properties") or {})
        except ChargePropertiesInvalid as exc:
            for field, codes in exc.error_details.items():
                errors.setdefault(field, []).extend(codes)
            continue
        fields, tiers = charge_columns(terms)
        fields["invoice_display_name"] = charge.get("invoice_display_name") or ""
        specs.append(ChargeSpec(metric=metric, fields=fields, tiers=tiers))
    if errors:
        raise ValidationFailed(errors)
    return specs


def _write_charges(*, plan: Plan, specs: list[ChargeSpec], replace: bool) -> None:
    existing = {charge.metric_id: charge for charge in plan.charges.all()}
    for spec in specs:
        charge = existing.pop(spec.metric.id, None)
        if charge is None:
            charge = Charge.objects.create(plan=plan, metric=spec.metric, **spec.fields)
        else:
            for field, value in spec.fields.items():
                setattr(charge, field, value)
            charge.save()
            charge.tiers.all().delete()
        ChargeTier.objects.bulk_create([ChargeTier(charge=charge, **tier) for tier in spec.tiers])
    if replace:
        for charge in existing.values():
            try:
                with transaction.atomic():
                    charge.delete()
            except ProtectedError:
                raise ValidationFailed({"charges": ["charge_in_use"]}) from None


def _plan_amount(data: dict[str, Any]) -> Decimal:
    return Decimal(data["amount_cents"]) / 100


def create_plan(*, service: Service, data: dict[str, Any]) -> Plan:
    specs = _resolve_charges(service=service, charges=data.get("charges") or [])
    try:
        with transaction.atomic():
            plan = Plan.objects.create(
                service=service, code=data["code"], name=data["name"],
                invoice_display_name=data.get("invoice_display_name") or "",
                description=data.get("description") or "", interval=data["interval"],
                amount=_plan_amount(data), amount_currency=data["amount_currency"],
                pay_in_advance=bool(data.get("pay_in_advance") or False),
            )
            _write_charges(plan=plan, specs=specs, replace=False)
    except IntegrityError:
        raise ValidationFailed({"code": ["value_already_exist"]}) from None
    return plan


def update_plan(*, plan: Plan, data: dict[str, Any]) -> Plan:
    """Updates the given fields; ``charges``, when sent, is the plan's complete charge list."""
    specs = (_resolve_charges(service=plan.service, charges=data["charges"])
             if data.get("charges") is not None else None)
    for field in ("name", "code", "interval", "amount_currency", "pay_in_advance"):
        if data.get(field) is not None:
            setattr(plan, field, data[field])
    for field in ("description", "invoice_display_name"):
        if field in data:
            setattr(plan, field, data[field] or "")
    if data.get("amount_cents") is not None:
        plan.amount = _plan_amount(data)
    try:
        with transaction.atomic():
            plan.save()
            if specs is not None:
                _write_charges(plan=plan, specs=specs, replace=True)
    except IntegrityError:
        raise ValidationFailed({"code": ["value_already_exist"]}) from None
    return plan


@transaction.atomic
def delete_plan(*, plan: Plan) -> None:
    """Refused while any subscription (even a closed one, whose bills reference it) uses it."""
    if Subscription.objects.filter(plan=plan).exists():
        raise NotAllowed("plan_in_use")
    plan.delete()


# --------------------------------------------------------------------------- subscriptions


def _window_fields(*, plan: Plan, billing_time: str, started_at: datetime, now: datetime) -> dict[str, Any]:
    anchor = windows.default_anchor(interval=plan.interval, billing_time=billing_time, started_at=started_at)
    start, end = windows.subscription_window(
        interval=plan.interval, billing_time=billing_time, started_at=started_at, at=max(now, started_at),
        anchor=anchor,
    )
    return {"billing_anchor": anchor, "current_period_start": start, "current_period_end": end}


def _locked_subscriptions() -> QuerySet[Subscription]:
    """Subscriptions to change, locked, with what their renderings (webhook, API) read.

    Only the subscription rows are locked: the service, plan and customer rows joined in
    are what every other subscription's writes and usage-event foreign keys need.
    """
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("plan", "account_link__customer", "service")
            .prefetch_related(charges_prefetch(lookup="plan__charges")))


def _open_subscription(*, service: Service, external_id: str) -> Subscription | None:
    return _locked_subscriptions().filter(service=service, external_id=external_id).exclude(
        status__in=CLOSED_SUBSCRIPTION_STATUSES).first()


@dataclass(frozen=True)
class SubscriptionResult:
    subscription: Subscription
    created: bool


def create_subscription(*, service: Service, data: dict[str, Any], now: datetime | None = None
                        ) -> SubscriptionResult:
    """Lago semantics: unknown customer → created; same external_id and plan → the existing
    subscription; another plan → the plan is changed; another customer → 422."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _create_subscription(service=service, data=data, now=now or timezone.now())
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _create_subscription(*, service: Service, data: dict[str, Any], now: datetime) -> SubscriptionResult:
    plan = get_plan(service=service, code=data["plan_code"])
    if plan is None:
        raise NotFound("plan_not_found")
    link = (AccountLink.objects.filter(service=service, external_id=data["external_customer_id"],
                                       deleted_at__isnull=True).select_related("customer").first())
    if link is None:
        link = identity_services.upsert_customer(service=service, data={"external_id": data["external_customer_id"]}).link
    existing = _open_subscription(service=service, external_id=data["external_id"])
    if existing is not None:
        if existing.account_link_id != link.id:
            raise ValidationFailed({"external_id": ["value_already_exist"]})
        if existing.plan_id == plan.id:
            return SubscriptionResult(existing, created=False)
        return SubscriptionResult(_change_plan(subscription=existing, plan=plan, now=now), created=False)

    # Whole seconds: an app that starts a subscription and immediately sends usage stamped
    # with Unix seconds must not see its first event refused as "before start".
    subscription_at = data.get("subscription_at") or now.replace(microsecond=0)
    billing_time = data.get("billing_time") or "calendar"
    subscription = Subscription(
        service=service, account_link=link, external_id=data["external_id"], name=data.get("name") or "",
        plan=plan, mode=SubscriptionMode.LIVE, billing_time=billing_time, subscription_at=subscription_at,
        ending_at=data.get("ending_at"), flat_amount=plan.amount, currency=plan.amount_currency,
    )
    if subscription_at > now:
        subscription.status = SubscriptionStatus.PENDING
    else:
        _activate(subscription, now=now)
    subscription.save()
    if subscription.status == SubscriptionStatus.ACTIVE:
        _emit_subscription(subscription, "subscription.started")
    return SubscriptionResult(subscription, created=True)


def _activate(subscription: Subscription, *, now: datetime) -> None:
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.started_at = subscription.subscription_at
    for field, value in _window_fields(plan=subscription.plan, billing_time=subscription.billing_time,
                                       started_at=subscription.started_at, now=now).items():
        setattr(subscription, field, value)


def _change_plan(*, subscription: Subscription, plan: Plan, now: datetime) -> Subscription:
    """Upgrade/downgrade in place, effective for the current window (never reopening a
    closed one: the window start only moves forward)."""
    interval_changed = subscription.plan.interval != plan.interval
    subscription.plan = plan
    subscription.flat_amount = plan.amount
    subscription.currency = plan.amount_currency
    if interval_changed and subscription.status == SubscriptionStatus.ACTIVE and subscription.started_at:
        fields = _window_fields(plan=plan, billing_time=subscription.billing_time,
                                started_at=subscription.started_at, now=now)
        start = max(fields["current_period_start"], subscription.current_period_start or fields[
            "current_period_start"])
        subscription.billing_anchor = fields["billing_anchor"]
        subscription.current_period_start = start
        subscription.current_period_end = max(fields["current_period_end"], start + (
            fields["current_period_end"] - fields["current_period_start"]))
    subscription.save()
    _emit_subscription(subscription, "subscription.updated")
    return subscription


@transaction.atomic
def update_subscription(*, subscription: Subscription, data: dict[str, Any], now: datetime | None = None
                        ) -> Subscription:
    now = now or timezone.now()
    subscription = _locked_subscriptions().get(pk=subscription.pk)
    if data.get("name") is not None:
        subscription.name = data["name"]
    if "ending_at" in data:
        subscription.ending_at = data["ending_at"]
    started = False
    if data.get("subscription_at") is not None:
        if subscription.status != SubscriptionStatus.PENDING:
            raise ValidationFailed({"subscription_at": ["value_is_invalid"]})
        subscription.subscription_at = data["subscription_at"]
        if subscription.subscription_at <= now:
            _activate(subscription, now=now)
            started = True
    subscription.save()
    _emit_subscription(subscription, "subscription.started" if started else "subscription.updated")
    return subscription


@transaction.atomic
def terminate_subscription(*, subscription: Subscription, now: datetime | None = None) -> Subscription:
    """Active → terminated now (its last window is rated up to now); pending → canceled."""
    now = now or timezone.now()
    subscription = _locked_subscriptions().get(pk=subscription.pk)
    if subscription.status == SubscriptionStatus.PENDING:
        subscription.status = SubscriptionStatus.CANCELED
        subscription.canceled_at = now
        subscription.save()
        _emit_subscription(subscription, "subscription.canceled")
    elif subscription.status == SubscriptionStatus.ACTIVE:
        subscription.status = SubscriptionStatus.TERMINATED
        subscription.terminated_at = now
        subscription.save()
        _emit_subscription(subscription, "subscription.terminated")
    return subscription


def terminate_customer_subscriptions(*, link: AccountLink) -> None:
    for subscription in Subscription.objects.filter(account_link=link).exclude(
            status__in=CLOSED_SUBSCRIPTION_STATUSES):
        terminate_subscription(subscription=subscription)


@transaction.atomic
def delete_customer(*, link: AccountLink) -> AccountLink:
    """Lago's customer DELETE: end the account's subscriptions, then soft-delete it.

    One transaction: a failure after the subscriptions ended must not leave a customer
    without subscriptions who still looks active (or the reverse).
    """
    terminate_customer_subscriptions(link=link)
    return identity_services.delete_customer(link=link)


def activate_due_subscriptions(*, now: datetime | None = None) -> int:
    """Start pending subscriptions whose ``subscription_at`` has come (beat / on demand)."""
    now = now or timezone.now()
    started = 0
    for subscription_id in Subscription.objects.filter(
            status=SubscriptionStatus.PENDING, subscription_at__lte=now).values_list("id", flat=True):
        with transaction.atomic():
            subscription = _locked_subscriptions().filter(pk=subscription_id,
                                                          status=SubscriptionStatus.PENDING).first()
            if subscription is None:
                continue
            _activate(subscription, now=now)
            subscription.save()
            _emit_subscription(subscription, "subscription.started")
            started += 1
    return started


# --------------------------------------------------------------------------- usage events


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: ParsedEvent
    subscription_id: UUID
    account_link_id: UUID
    timestamp: datetime
    created_at: datetime


class EventsRejected(Exception):
    """Per-event Lago error_details, keyed by the event's index in the request."""

    def __init__(self, errors: dict[int, dict[str, Any]]):
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Sub:
    id: UUID
    account_link_id: UUID
    status: str
    started_at: datetime | None
    ends_at: datetime | None
    # Events before this instant belong to a closed window (metering.rating's rule).
    closed_before: datetime | None


Resolved = tuple[int, ParsedEvent, _Sub, "Decimal | None"]

# One round trip resolves the subscriptions, locks them FOR KEY SHARE (id order, as
# metering.rating.lock_subscriptions_for_ingest does, so a window that rating is closing
# is either closed before we read it or waits for our insert) and reads the metrics.
# GREATEST ignores NULLs: the same "max of the known instants" as the rating helper.
_RESOLVE_AND_LOCK = f"""
    SELECT s.external_id, s.id, s.account_link_id, s.status, s.started_at,
           LEAST(s.terminated_at, s.ending_at),
           GREATEST(s.current_period_start, s.usage_frozen_until),
           (SELECT json_agg(json_build_array(m.code, m.aggregation_type, m.field_name))
              FROM {BillableMetric._meta.db_table} m WHERE m.service_id = %s AND m.code = ANY(%s))
      FROM {Subscription._meta.db_table} s
     WHERE s.service_id = %s AND s.external_id = ANY(%s) AND s.status <> %s
     ORDER BY s.id
       FOR KEY SHARE OF s
"""
_METRIC_LOOKUP = f"""
    SELECT code, aggregation_type, field_name FROM {BillableMetric._meta.db_table}
     WHERE service_id = %s AND code = ANY(%s)
"""
_INSERT_EVENTS = f"""
    INSERT INTO {UsageEvent._meta.db_table}
        (service_id, created_at, subscription_id, external_subscription_id, code, transaction_id,
         "timestamp", properties, value, precise_total_amount_cents, payload_hash)
    SELECT %s, %s, * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
                                 %b::text[]::jsonb[], %b::numeric[], %b::numeric[], %b::text[])
    ON CONFLICT (service_id, external_subscription_id, transaction_id) DO NOTHING
    RETURNING external_subscription_id, transaction_id
"""
_EXISTING_EVENTS = f"""
    SELECT e.external_subscription_id, e.transaction_id, e.payload_hash, e.subscription_id,
           s.account_link_id, e."timestamp", e.created_at
      FROM {UsageEvent._meta.db_table} e
      JOIN {Subscription._meta.db_table} s ON s.id = e.subscription_id
      JOIN unnest(%s::text[], %s::text[]) AS k(external_subscription_id, transaction_id)
        ON e.external_subscription_id = k.external_subscription_id
       AND e.transaction_id = k.transaction_id
     WHERE e.service_id = %s
"""


def _pick_subscription(candidates: list[_Sub], timestamp: datetime) -> tuple[_Sub | None, str | None]:
    """The subscription (of this external id) running at ``timestamp``, as Lago resolves it:
    started at or before it and not ended; otherwise why not."""
    running = [s for s in candidates if s.started_at is not None and s.started_at <= timestamp
               and (s.ends_at is None or timestamp < s.ends_at)]
    if running:
        # Lago orders terminated_at DESC NULLS FIRST, started_at DESC.
        return max(running, key=lambda s: (s.ends_at is None, s.started_at)), None
    started = [s for s in candidates if s.started_at is not None and s.started_at <= timestamp]
    return None, "after_subscription_end" if started else "before_subscription_start"


def _check_events(events: list[tuple[int, ParsedEvent]], subscriptions: dict[str, list[_Sub]],
                  metrics: dict[str, tuple[str, str]], errors: dict[int, dict[str, Any]]) -> list[Resolved]:
    """Apply the ingest rules; adds to ``errors`` (by request index); returns the good events."""
    resolved: list[Resolved] = []
    for index, event in events:
        event_errors: dict[str, Any] = {}
        metric = metrics.get(event.code)
        if metric is None:
            event_errors["code"] = ["billable_metric_not_found"]
        candidates = subscriptions.get(event.external_subscription_id)
        subscription = None
        if not candidates:
            event_errors["external_subscription_id"] = ["subscription_not_found"]
        else:
            subscription, timestamp_error = _pick_subscription(candidates, event.timestamp)
            if timestamp_error:
                event_errors["timestamp"] = [timestamp_error]
            elif is_period_closed(closed_before=subscription.closed_before, timestamp=event.timestamp):
                event_errors["timestamp"] = ["period_closed"]
        value = None
        if metric is not None:
            aggregation, field_name = metric
            if property_error := numeric_property_error(
                    aggregation_type=aggregation, field_name=field_name, properties=event.properties):
                event_errors["properties"] = property_error
            elif field_name and aggregation != "unique_count_agg":
                value = parse_numeric(event.properties[field_name])
                if value is not None and abs(value) >= _MAX_EVENT_VALUE:
                    event_errors["properties"] = {field_name: ["value_is_out_of_range"]}
        if event_errors:
            errors[index] = event_errors
        else:
            assert subscription is not None
            resolved.append((index, event, subscription, value))
    return resolved


def ingest_events(*, service: Service, events: list[tuple[int, ParsedEvent]],
                  errors: dict[int, dict[str, Any]] | None = None) -> list[StoredEvent]:
    """Validate against this service's subscriptions and metrics, then store all or nothing.

    ``errors`` carries problems already found by the parser (keyed by request index) so
    that a rejected batch reports every problem at once. Identical resends (same payload
    hash) are successes that store nothing; a different payload under a stored
    (external_subscription_id, transaction_id) is ``value_already_exist``. Raises
    EventsRejected with errors keyed by request index.
    """
    errors = dict(errors or {})
    if not events:
        raise EventsRejected(errors)
    if len(events) == 1 and not errors and connection.vendor == "postgresql":
        stored = _ingest_one_optimistically(service=service, index=events[0][0], event=events[0][1])
        if stored is not None:
            return [stored]
    for attempt in range(_TRANSIENT_RETRIES):
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    return _ingest_postgresql(service=service, events=events, errors=dict(errors))
                return _ingest_portably(service=service, events=events, errors=dict(errors))
        except (DatabaseError, PsycopgError) as exc:
            # Keys are inserted in one global order, so ingest never deadlocks with itself;
            # a deadlock or serialization failure against another writer is retried.
            if not _is_transient(exc) or attempt == _TRANSIENT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


_TRANSIENT_RETRIES = 3


def _is_transient(exc: BaseException) -> bool:
    import psycopg.errors

    while exc is not None:
        if isinstance(exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
            return True
        exc = exc.__cause__
    return False


def _raw_cursor():
    """A psycopg cursor on Django's connection (same transaction) with server-side
    binding: arrays go as parameters, not quoted into the SQL text, and the statements
    are prepared after a few executions."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _ingest_postgresql(*, service: Service, events: list[tuple[int, ParsedEvent]],
                       errors: dict[int, dict[str, Any]]) -> list[StoredEvent]:
    external_ids = list({event.external_subscription_id for _, event in events})
    codes = list({event.code for _, event in events})
    subscriptions: dict[str, list[_Sub]] = {}
    metrics: dict[str, tuple[str, str]] | None = None
    with _raw_cursor() as cursor:
        cursor.execute(_RESOLVE_AND_LOCK, [service.id, codes, service.id, external_ids,
                                           str(SubscriptionStatus.CANCELED)])
        for external_id, sub_id, link_id, status, started_at, ends_at, closed_before, metric_rows in cursor:
            subscriptions.setdefault(external_id, []).append(
                _Sub(sub_id, link_id, status, started_at, ends_at, closed_before))
            if metrics is None:
                metrics = {code: (aggregation, field_name) for code, aggregation, field_name in metric_rows or []}
        if metrics is None:  # no subscription matched: still name unknown metrics
            cursor.execute(_METRIC_LOOKUP, [service.id, codes])
            metrics = {code: (aggregation, field_name) for code, aggregation, field_name in cursor}
        resolved = _check_events(events, subscriptions, metrics, errors)
        if errors:
            raise EventsRejected(errors)
        events_in_request_order = resolved
        # One global order of unique keys: concurrent batches that overlap take the index
        # entries in the same order and so can wait for each other but never deadlock.
        resolved = sorted(resolved, key=lambda r: (r[1].external_subscription_id, r[1].transaction_id))
        now = timezone.now()
        cursor.execute(_INSERT_EVENTS, [
            service.id, now,
            [s.id for _, _, s, _ in resolved],
            [e.external_subscription_id for _, e, _, _ in resolved],
            [e.code for _, e, _, _ in resolved],
            [e.transaction_id for _, e, _, _ in resolved],
            [e.timestamp for _, e, _, _ in resolved],
            [e.properties_json.decode() for _, e, _, _ in resolved],
            [v for _, _, _, v in resolved],
            [e.precise_total_amount_cents for _, e, _, _ in resolved],
            [e.payload_hash for _, e, _, _ in resolved],
        ])
        inserted = set(cursor.fetchall())
        stored: dict[tuple[str, str], StoredEvent] = {}
        for _, event, subscription, _ in resolved:
            key = (event.external_subscription_id, event.transaction_id)
            if key in inserted:
                stored[key] = StoredEvent(event, subscription.id, subscription.account_link_id,
                                          event.timestamp, now)
        if len(inserted) < len(resolved):
            missing = [(e.external_subscription_id, e.transaction_id) for _, e, _, _ in resolved
                       if (e.external_subscription_id, e.transaction_id) not in inserted]
            cursor.execute(_EXISTING_EVENTS, [[k[0] for k in missing], [k[1] for k in missing], service.id])
            existing = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
            for index, event, _, _ in resolved:
                key = (event.external_subscription_id, event.transaction_id)
                if key in inserted:
                    continue
                payload_hash, subscription_id, link_id, timestamp, created_at = existing[key]
                if payload_hash != event.payload_hash:
                    errors[index] = {"transaction_id": ["value_already_exist"]}
                else:
                    stored[key] = StoredEvent(event, subscription_id, link_id, timestamp, created_at)
    if errors:
        raise EventsRejected(errors)
    return [stored[(e.external_subscription_id, e.transaction_id)] for _, e, _, _ in events_in_request_order]


# The single-event hot path (see ``_ingest_one_optimistically``): read without locks,
# then insert in one autocommitted statement that re-reads the subscription FOR KEY SHARE
# and only inserts if everything the decision rested on is unchanged.
_RESOLVE_ONE = f"""
    SELECT m.aggregation_type, m.field_name,
           s.id, s.account_link_id, s.status, s.started_at,
           LEAST(s.terminated_at, s.ending_at),
           GREATEST(s.current_period_start, s.usage_frozen_until)
      FROM (VALUES (1)) AS one (x)
      LEFT JOIN {BillableMetric._meta.db_table} m ON m.service_id = %s AND m.code = %s
      LEFT JOIN {Subscription._meta.db_table} s
             ON s.service_id = %s AND s.external_id = %s AND s.status <> %s
"""
_INSERT_ONE_IF_UNCHANGED = f"""
    INSERT INTO {UsageEvent._meta.db_table}
        (service_id, created_at, subscription_id, external_subscription_id, code, transaction_id,
         "timestamp", properties, value, precise_total_amount_cents, payload_hash)
    SELECT %s, %s, s.id, %s, %s, %s, %s, %s::jsonb, %s::numeric, %s::numeric, %s
      FROM {Subscription._meta.db_table} s
     WHERE s.id = %s AND s.status = %s
       AND s.started_at IS NOT DISTINCT FROM %s::timestamptz
       AND LEAST(s.terminated_at, s.ending_at) IS NOT DISTINCT FROM %s::timestamptz
       AND GREATEST(s.current_period_start, s.usage_frozen_until) IS NOT DISTINCT FROM %s::timestamptz
       AND EXISTS (SELECT 1 FROM {BillableMetric._meta.db_table} m
                    WHERE m.service_id = %s AND m.code = %s AND m.aggregation_type = %s
                      AND m.field_name IS NOT DISTINCT FROM %s)
       FOR KEY SHARE OF s
    ON CONFLICT (service_id, external_subscription_id, transaction_id) DO NOTHING
    RETURNING 1
"""


def _ingest_one_optimistically(*, service: Service, index: int, event: ParsedEvent) -> StoredEvent | None:
    """Store one new, valid event in two autocommitted statements, or return None.

    The general path costs five round trips (BEGIN, a locking read, the insert, COMMIT
    and Django's connection health check). Here the read takes no lock and the insert
    is its own transaction (inside a caller's transaction, both simply join it). The
    insert locks the chosen subscription ``FOR KEY SHARE``, so a window being closed
    waits for it exactly as on the general path, and inserts only if the subscription
    and the metric still look as they did when the event was checked.

    Invalid events raise EventsRejected straight from the unlocked read: a 422 is not a
    write. None means "not settled here" (a resend, a conflicting transaction_id, or a
    subscription or metric that changed meanwhile): the caller runs the general path,
    which sorts that out under its locks. A connection the database dropped (a restart)
    is reopened once; the insert is idempotent, so repeating it cannot double-count.
    """
    import psycopg

    for attempt in range(2):
        try:
            return _try_ingest_one(service=service, index=index, event=event)
        except psycopg.OperationalError:
            reconnectable = not connection.in_atomic_block and connection.connection is not None and (
                connection.connection.closed)
            if attempt or not reconnectable:
                raise
            connection.close()
    raise AssertionError("unreachable")


def _try_ingest_one(*, service: Service, index: int, event: ParsedEvent) -> StoredEvent | None:
    with _raw_cursor() as cursor:
        rows = cursor.execute(_RESOLVE_ONE, [service.id, event.code, service.id, event.external_subscription_id,
                                             str(SubscriptionStatus.CANCELED)], prepare=True).fetchall()
        aggregation, field_name = rows[0][0], rows[0][1]
        metrics = {event.code: (aggregation, field_name)} if aggregation is not None else {}
        candidates = [_Sub(*row[2:]) for row in rows if row[2] is not None]
        errors: dict[int, dict[str, Any]] = {}
        resolved = _check_events([(index, event)], {event.external_subscription_id: candidates} if candidates else {},
                                 metrics, errors)
        if errors:
            raise EventsRejected(errors)
        _, _, subscription, value = resolved[0]
        now = timezone.now()
        inserted = cursor.execute(_INSERT_ONE_IF_UNCHANGED, [
            service.id, now, event.external_subscription_id, event.code, event.transaction_id, event.timestamp,
            event.properties_json.decode(), value, event.precise_total_amount_cents, event.payload_hash,
            subscription.id, subscription.status, subscription.started_at, subscription.ends_at,
            subscription.closed_before, service.id, event.code, aggregation, field_name,
        ], prepare=True).fetchone()
    if inserted is None:
        return None
    return StoredEvent(event, subscription.id, subscription.account_link_id, event.timestamp, now)


def _ingest_portably(*, service: Service, events: list[tuple[int, ParsedEvent]],
                     errors: dict[int, dict[str, Any]]) -> list[StoredEvent]:
    """The same rules through the ORM, for the embedded SQLite default (its writes are
    serialized, so reading the existing keys before inserting is race-free)."""
    external_ids = {event.external_subscription_id for _, event in events}
    codes = {event.code for _, event in events}
    closed = lock_subscriptions_for_ingest(subscription_ids=Subscription.objects.filter(
        service=service, external_id__in=external_ids).values_list("id", flat=True))
    subscriptions: dict[str, list[_Sub]] = {}
    for external_id, sub_id, link_id, status, started_at, terminated_at, ending_at in (
            Subscription.objects.filter(service=service, external_id__in=external_ids)
            .exclude(status=SubscriptionStatus.CANCELED)
            .values_list("external_id", "id", "account_link_id", "status", "started_at", "terminated_at",
                         "ending_at")):
        ends = [t for t in (terminated_at, ending_at) if t is not None]
        subscriptions.setdefault(external_id, []).append(
            _Sub(sub_id, link_id, status, started_at, min(ends) if ends else None, closed.get(sub_id)))
    metrics = {code: (aggregation, field_name) for code, aggregation, field_name in
               BillableMetric.objects.filter(service=service, code__in=codes)
               .values_list("code", "aggregation_type", "field_name")}
    resolved = _check_events(events, subscriptions, metrics, errors)
    if errors:
        raise EventsRejected(errors)

    now = timezone.now()
    existing = {
        (row.external_subscription_id, row.transaction_id): row
        for row in UsageEvent.objects.filter(
            service=service, external_subscription_id__in=external_ids,
            transaction_id__in={e.transaction_id for _, e in events}).select_related("subscription")
    }
    stored: list[StoredEvent] = []
    new_rows: list[UsageEvent] = []
    for index, event, subscription, value in resolved:
        row = existing.get((event.external_subscription_id, event.transaction_id))
        if row is None:
            new_rows.append(UsageEvent(
                service=service, subscription_id=subscription.id, created_at=now,
                external_subscription_id=event.external_subscription_id, code=event.code,
                transaction_id=event.transaction_id, timestamp=event.timestamp,
                properties=json.loads(event.properties_json), value=value,
                precise_total_amount_cents=event.precise_total_amount_cents, payload_hash=event.payload_hash))
            stored.append(StoredEvent(event, subscription.id, subscription.account_link_id, event.timestamp, now))
        elif row.payload_hash != event.payload_hash:
            errors[index] = {"transaction_id": ["value_already_exist"]}
        else:
            stored.append(StoredEvent(event, row.subscription_id, row.subscription.account_link_id,
                                      row.timestamp, row.created_at))
    if errors:
        raise EventsRejected(errors)
    UsageEvent.objects.bulk_create(new_rows)
    return stored
