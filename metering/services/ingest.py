"""Usage-event ingestion: validate events against the service's subscriptions and
metrics, then store them all or none.

Three store paths apply the same rules (``_check_events``): the single-event hot path
(``_ingest_one_optimistically``, PostgreSQL), the general PostgreSQL path
(``_ingest_postgresql``: one locking resolve, one set-based insert) and the portable ORM
path for the embedded SQLite default (``_ingest_portably``). They share the window
rules (``metering.windows``, ``metering.window_sql`` for the statements) and the lock
protocol with rating (``metering.locks``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from identity.models import Service
from metering.event_schema import ParsedEvent, numeric_property_error, parse_numeric
from metering.locks import lock_subscriptions_for_ingest
from metering.models import BillableMetric, Subscription, SubscriptionStatus, UsageEvent
from metering.window_sql import closed_before_sql, subscription_end_sql
from metering.windows import is_period_closed, subscription_end


# UsageEvent.value is numeric(38, 10).
_MAX_EVENT_VALUE = Decimal(10) ** 28


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

    def __init__(self, errors: dict[int, dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Sub:
    id: UUID
    account_link_id: UUID
    status: str
    started_at: datetime | None
    ends_at: datetime | None  # metering.windows.subscription_end
    # Events before this instant belong to a closed window (metering.windows.closed_before).
    closed_before: datetime | None


Resolved = tuple[int, ParsedEvent, _Sub, "Decimal | None"]

# One round trip resolves the subscriptions, locks them FOR KEY SHARE (id order, as
# metering.locks.lock_subscriptions_for_ingest does, so a window that rating is closing
# is either closed before we read it or waits for our insert) and reads the metrics.
_RESOLVE_AND_LOCK = f"""
    SELECT s.external_id, s.id, s.account_link_id, s.status, s.started_at,
           {subscription_end_sql("s")},
           {closed_before_sql("s")},
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
    return None, ErrorCode.AFTER_SUBSCRIPTION_END if started else ErrorCode.BEFORE_SUBSCRIPTION_START


def _check_events(events: list[tuple[int, ParsedEvent]], subscriptions: dict[str, list[_Sub]],
                  metrics: dict[str, tuple[str, str]], errors: dict[int, dict[str, Any]]) -> list[Resolved]:
    """Apply the ingest rules; adds to ``errors`` (by request index); returns the good events."""
    resolved: list[Resolved] = []
    for index, event in events:
        event_errors: dict[str, Any] = {}
        metric = metrics.get(event.code)
        if metric is None:
            event_errors["code"] = [ErrorCode.BILLABLE_METRIC_NOT_FOUND]
        candidates = subscriptions.get(event.external_subscription_id)
        subscription = None
        if not candidates:
            event_errors["external_subscription_id"] = [ErrorCode.SUBSCRIPTION_NOT_FOUND]
        else:
            subscription, timestamp_error = _pick_subscription(candidates, event.timestamp)
            if subscription is None:
                event_errors["timestamp"] = [timestamp_error]
            elif is_period_closed(closed_before=subscription.closed_before, timestamp=event.timestamp):
                event_errors["timestamp"] = [ErrorCode.PERIOD_CLOSED]
        value = None
        if metric is not None:
            aggregation, field_name = metric
            if property_error := numeric_property_error(
                    aggregation_type=aggregation, field_name=field_name, properties=event.properties):
                event_errors["properties"] = property_error
            elif field_name and aggregation != "unique_count_agg":
                value = parse_numeric(event.properties[field_name])
                if value is not None and abs(value) >= _MAX_EVENT_VALUE:
                    event_errors["properties"] = {field_name: [ErrorCode.VALUE_IS_OUT_OF_RANGE]}
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
        except (DatabaseError, psycopg.Error) as exc:
            # Keys are inserted in one global order, so ingest never deadlocks with itself;
            # a deadlock or serialization failure against another writer is retried.
            if not _is_transient(exc) or attempt == _TRANSIENT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


_TRANSIENT_RETRIES = 3


def _is_transient(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
            return True
        cause = cause.__cause__
    return False


def _raw_cursor() -> psycopg.Cursor[Any]:
    """A psycopg cursor on Django's connection (same transaction) with server-side
    binding: arrays go as parameters, not quoted into the SQL text, and the statements
    are prepared after a few executions."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


_EventKey = tuple[str, str]  # (external_subscription_id, transaction_id): an event's unique key


def _ingest_postgresql(*, service: Service, events: list[tuple[int, ParsedEvent]],
                       errors: dict[int, dict[str, Any]]) -> list[StoredEvent]:
    with _raw_cursor() as cursor:
        subscriptions, metrics = _resolve_and_lock(cursor, service=service, events=events)
        resolved = _check_events(events, subscriptions, metrics, errors)
        if errors:
            raise EventsRejected(errors)
        # One global order of unique keys: concurrent batches that overlap take the index
        # entries in the same order and so can wait for each other but never deadlock.
        in_key_order = sorted(resolved, key=lambda r: (r[1].external_subscription_id, r[1].transaction_id))
        stored, inserted = _insert_events(cursor, service=service, resolved=in_key_order)
        if len(inserted) < len(in_key_order):
            _settle_existing_keys(cursor, service=service, resolved=in_key_order, inserted=inserted,
                                  stored=stored, errors=errors)
    if errors:
        raise EventsRejected(errors)
    return [stored[(e.external_subscription_id, e.transaction_id)] for _, e, _, _ in resolved]


def _resolve_and_lock(cursor: psycopg.Cursor[Any], *, service: Service, events: list[tuple[int, ParsedEvent]]
                      ) -> tuple[dict[str, list[_Sub]], dict[str, tuple[str, str]]]:
    """The events' subscriptions (locked, see ``_RESOLVE_AND_LOCK``) and metrics."""
    external_ids = list({event.external_subscription_id for _, event in events})
    codes = list({event.code for _, event in events})
    subscriptions: dict[str, list[_Sub]] = {}
    metrics: dict[str, tuple[str, str]] | None = None
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
    return subscriptions, metrics


def _insert_events(cursor: psycopg.Cursor[Any], *, service: Service, resolved: list[Resolved]
                   ) -> tuple[dict[_EventKey, StoredEvent], set[_EventKey]]:
    """Insert the events whose key is new, in one statement; returns those stored and their keys."""
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
    inserted: set[_EventKey] = set(cursor.fetchall())
    stored: dict[_EventKey, StoredEvent] = {}
    for _, event, subscription, _ in resolved:
        key = (event.external_subscription_id, event.transaction_id)
        if key in inserted:
            stored[key] = StoredEvent(event, subscription.id, subscription.account_link_id, event.timestamp, now)
    return stored, inserted


def _settle_existing_keys(cursor: psycopg.Cursor[Any], *, service: Service, resolved: list[Resolved],
                          inserted: set[_EventKey], stored: dict[_EventKey, StoredEvent],
                          errors: dict[int, dict[str, Any]]) -> None:
    """Events whose key was already stored: an identical payload is a resend, answered with
    the stored event; another payload is ``value_already_exist`` (added to ``errors``)."""
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
            errors[index] = {"transaction_id": [ErrorCode.VALUE_ALREADY_EXIST]}
        else:
            stored[key] = StoredEvent(event, subscription_id, link_id, timestamp, created_at)


# The single-event hot path (see ``_ingest_one_optimistically``): read without locks,
# then insert in one autocommitted statement that re-reads the subscription FOR KEY SHARE
# and only inserts if everything the decision rested on is unchanged.
_RESOLVE_ONE = f"""
    SELECT m.aggregation_type, m.field_name,
           s.id, s.account_link_id, s.status, s.started_at,
           {subscription_end_sql("s")},
           {closed_before_sql("s")}
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
       AND {subscription_end_sql("s")} IS NOT DISTINCT FROM %s::timestamptz
       AND {closed_before_sql("s")} IS NOT DISTINCT FROM %s::timestamptz
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
    subscriptions, metrics = _resolve_portably(service=service, events=events)
    resolved = _check_events(events, subscriptions, metrics, errors)
    if errors:
        raise EventsRejected(errors)

    external_ids = {event.external_subscription_id for _, event in events}
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
            errors[index] = {"transaction_id": [ErrorCode.VALUE_ALREADY_EXIST]}
        else:
            stored.append(StoredEvent(event, row.subscription_id, row.subscription.account_link_id,
                                      row.timestamp, row.created_at))
    if errors:
        raise EventsRejected(errors)
    UsageEvent.objects.bulk_create(new_rows)
    return stored

def _resolve_portably(*, service: Service, events: list[tuple[int, ParsedEvent]]
                      ) -> tuple[dict[str, list[_Sub]], dict[str, tuple[str, str]]]:
    """``_resolve_and_lock`` through the ORM: the subscriptions locked by
    ``lock_subscriptions_for_ingest``, then read with the metrics."""
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
        ends_at = subscription_end(terminated_at=terminated_at, ending_at=ending_at)
        subscriptions.setdefault(external_id, []).append(
            _Sub(sub_id, link_id, status, started_at, ends_at, closed.get(sub_id)))
    metrics = {code: (aggregation, field_name) for code, aggregation, field_name in
               BillableMetric.objects.filter(service=service, code__in=codes)
               .values_list("code", "aggregation_type", "field_name")}
    return subscriptions, metrics


def estimate_fees(*, service: Service, event: ParsedEvent) -> None:
    """Lago's ``POST /events/estimate_fees`` (``Fees::EstimatePayInAdvanceService``): the event
    is validated as one to create (404 for an unknown subscription or metric of this service),
    then the fees of the plan's charges paid in advance are estimated. Charges paid in
    advance are refused here (``pay_in_advance`` → ``not_supported``), so every valid event
    ends as Lago's 422 ``{"code": ["does_not_match_an_instant_charge"]}``."""
    subscription = (Subscription.objects.filter(service=service, external_id=event.external_subscription_id,
                                                status=SubscriptionStatus.ACTIVE).select_related("plan").first())
    if subscription is None:
        raise NotFound(ErrorCode.SUBSCRIPTION_NOT_FOUND)
    metric = BillableMetric.objects.filter(service=service, code=event.code).first()
    if metric is None:
        raise NotFound(ErrorCode.BILLABLE_METRIC_NOT_FOUND)
    problem = numeric_property_error(aggregation_type=metric.aggregation_type, field_name=metric.field_name,
                                     properties=event.properties)
    if problem is not None:
        raise ValidationFailed({"properties": problem})
    raise ValidationFailed({"code": [ErrorCode.DOES_NOT_MATCH_AN_INSTANT_CHARGE]})
