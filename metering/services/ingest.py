"""Usage-event ingestion: validate events against the service's subscriptions and
metrics, then store them all or none.

Three store paths apply the same rules (``_check_events``): the hot path
(``_ingest_optimistically``, PostgreSQL: an unlocked resolve and one autocommitted store
statement, for single events and batches, new events and identical resends alike), the
general PostgreSQL path (``_ingest_postgresql``: a locking resolve and the same store
statement in a transaction) and the portable ORM path for the embedded SQLite default
(``_ingest_portably``). Uniqueness is held by the key table (``UsageEventKey``): on
PostgreSQL the events table is partitioned by month, which a unique index cannot span. They share the window
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
from metering.models import BillableMetric, Subscription, SubscriptionStatus, UsageEvent, UsageEventKey
from metering.window_sql import closed_before_sql, subscription_end_sql
from metering.windows import is_period_closed, subscription_end


# UsageEvent.value is numeric(38, 10).
_MAX_EVENT_VALUE = Decimal(10) ** 28


# --------------------------------------------------------------------------- usage events


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: ParsedEvent
    subscription_id: UUID | None  # None: kept unmatched in lenient mode (services.lenient)
    account_link_id: UUID | None
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

_EVENTS = UsageEvent._meta.db_table
_KEYS = UsageEventKey._meta.db_table
_SUBSCRIPTIONS = Subscription._meta.db_table
_METRICS = BillableMetric._meta.db_table

# Resolve without locks (the hot path): the events' subscriptions and metrics in one
# round trip; the LEFT JOIN yields a row with the metrics even when no subscription matches.
_RESOLVE = f"""
    SELECT (SELECT json_agg(json_build_array(m.code, m.aggregation_type, m.field_name))
              FROM {_METRICS} m WHERE m.service_id = %s AND m.code = ANY(%s)),
           s.external_id, s.id, s.account_link_id, s.status, s.started_at,
           {subscription_end_sql("s")},
           {closed_before_sql("s")}
      FROM (VALUES (1)) AS one (x)
      LEFT JOIN {_SUBSCRIPTIONS} s ON s.service_id = %s AND s.external_id = ANY(%s) AND s.status <> %s
"""
# The same, locking the subscriptions FOR KEY SHARE (id order, as
# metering.locks.lock_subscriptions_for_ingest does, so a window that rating is closing
# is either closed before we read it or waits for our insert): the general path.
_RESOLVE_AND_LOCK = f"""
    SELECT (SELECT json_agg(json_build_array(m.code, m.aggregation_type, m.field_name))
              FROM {_METRICS} m WHERE m.service_id = %s AND m.code = ANY(%s)),
           s.external_id, s.id, s.account_link_id, s.status, s.started_at,
           {subscription_end_sql("s")},
           {closed_before_sql("s")}
      FROM (VALUES (1)) AS one (x)
      LEFT JOIN LATERAL (
            SELECT * FROM {_SUBSCRIPTIONS} s
             WHERE s.service_id = %s AND s.external_id = ANY(%s) AND s.status <> %s
             ORDER BY s.id
               FOR KEY SHARE OF s) AS s ON true
"""

# The stored key of one request row, as one primary-key probe. LIMIT 1 (the key is unique)
# keeps PostgreSQL from flattening the lookup into a join it may plan as a hash of ALL the
# service's keys: the statistics of a service that is new or growing since the last ANALYZE
# say it has almost none, and every request then read them all (a new deployment's first
# 100,000 events ingested at a third of the speed of a table of 80M).
_KEY_OF_ROW = f"""
    SELECT k.external_subscription_id, k.transaction_id, k.payload_hash, k.event_id, k."timestamp"
      FROM {_KEYS} k
     WHERE k.service_id = {{service}} AND k.transaction_id = i.transaction_id
       AND k.external_subscription_id = i.external_subscription_id
     LIMIT 1"""

# Store a request's events in ONE statement, whether they are new, resends or both:
#
# * ``unchanged`` re-reads the chosen subscriptions FOR KEY SHARE (the lock the general
#   path takes; it conflicts only with closing a window) and keeps those that still look
#   as they did when the events were checked; ``metrics_unchanged`` does the same for the
#   metrics. If anything changed, nothing is written (``go`` is false) and the caller
#   decides again under locks.
# * ``existing`` reads the keys already stored (index lookups on the key table's primary
#   key). An identical resend is settled from it, with no write and no lock wait: it
#   costs what a new event costs. A different payload under a stored key stops the
#   whole request (``go`` false): ``value_already_exist``, nothing stored.
# * ``new_keys`` claims the remaining keys in the key table (the exact uniqueness rule,
#   not partitioned; one global key order, so concurrent requests never deadlock), and
#   ``new_events`` stores the events of the claimed keys in their monthly partitions,
#   under the event ids drawn for the keys.
# * A key inserted by a concurrent request that committed while this statement ran is
#   neither claimed nor in ``existing`` (the statement's snapshot predates it). When
#   ``whole`` is set (autocommitted hot path) and this request nevertheless claimed
#   other keys, ``metering_ingest_refuse_partial`` raises, undoing the whole statement,
#   and the caller takes the locking transactional path: a batch is stored all or none.
_STORE = f"""
WITH input AS (
    SELECT * FROM unnest(%(subscription_ids)b::uuid[], %(external_subscription_ids)b::text[], %(codes)b::text[],
                         %(transaction_ids)b::text[], %(timestamps)b::timestamptz[], %(properties)b::text[]::jsonb[],
                         %(values)b::numeric[], %(precise_totals)b::numeric[], %(payload_hashes)b::text[])
           WITH ORDINALITY
        AS i (subscription_id, external_subscription_id, code, transaction_id, "timestamp", properties, value,
              precise_total_amount_cents, payload_hash, position)
),
unchanged AS (
    SELECT s.id FROM {_SUBSCRIPTIONS} s
      JOIN unnest(%(sub_ids)b::uuid[], %(sub_statuses)b::text[], %(sub_started)b::timestamptz[],
                  %(sub_ends)b::timestamptz[], %(sub_closed_before)b::timestamptz[])
           AS x (id, status, started_at, ends_at, closed_before) ON s.id = x.id
     WHERE s.status = x.status
       AND s.started_at IS NOT DISTINCT FROM x.started_at
       AND {subscription_end_sql("s")} IS NOT DISTINCT FROM x.ends_at
       AND {closed_before_sql("s")} IS NOT DISTINCT FROM x.closed_before
     ORDER BY s.id
       FOR KEY SHARE OF s
),
metrics_unchanged AS (
    SELECT m.code FROM {_METRICS} m
      JOIN unnest(%(metric_codes)b::text[], %(metric_aggregations)b::text[], %(metric_fields)b::text[])
           AS x (code, aggregation_type, field_name)
        ON m.service_id = %(service_id)s AND m.code = x.code
     WHERE m.aggregation_type = x.aggregation_type AND m.field_name IS NOT DISTINCT FROM x.field_name
),
existing AS (
    SELECT k.external_subscription_id, k.transaction_id, k.payload_hash, k.event_id, k."timestamp",
           k.payload_hash = i.payload_hash AS same
      FROM input i
     CROSS JOIN LATERAL ({_KEY_OF_ROW.format(service="%(service_id)s")}) AS k
),
decision AS (
    SELECT (SELECT count(*) FROM unchanged) = cardinality(%(sub_ids)b::uuid[])
       AND (SELECT count(*) FROM metrics_unchanged) = cardinality(%(metric_codes)b::text[])
       AND NOT EXISTS (SELECT 1 FROM existing WHERE NOT same) AS go
),
new_keys AS (
    INSERT INTO {_KEYS} AS k (service_id, transaction_id, external_subscription_id, event_id, "timestamp",
                              payload_hash)
    SELECT %(service_id)s, i.transaction_id, i.external_subscription_id, nextval('{_EVENTS}_id_seq'),
           i."timestamp", i.payload_hash
      FROM input i
     WHERE (SELECT go FROM decision)
       AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.transaction_id = i.transaction_id
                                                  AND e.external_subscription_id = i.external_subscription_id)
     ORDER BY i.position
    ON CONFLICT DO NOTHING
    RETURNING k.external_subscription_id, k.transaction_id, k.event_id
),
new_events AS (
    INSERT INTO {_EVENTS} (id, service_id, created_at, subscription_id, external_subscription_id, code,
                           transaction_id, "timestamp", properties, value, precise_total_amount_cents, payload_hash)
    SELECT k.event_id, %(service_id)s, %(now)s, i.subscription_id, i.external_subscription_id, i.code,
           i.transaction_id, i."timestamp", i.properties, i.value, i.precise_total_amount_cents, i.payload_hash
      FROM new_keys k
      JOIN input i ON i.transaction_id = k.transaction_id AND i.external_subscription_id = k.external_subscription_id
)
SELECT 'new', k.external_subscription_id, k.transaction_id, NULL, NULL::uuid, NULL::uuid, NULL::timestamptz,
       NULL::timestamptz
  FROM new_keys k
UNION ALL
SELECT 'old', e.external_subscription_id, e.transaction_id, e.payload_hash, ev.subscription_id,
       s.account_link_id, ev."timestamp", ev.created_at
  FROM existing e
  JOIN {_EVENTS} ev ON ev.id = e.event_id AND ev."timestamp" = e."timestamp"
  JOIN {_SUBSCRIPTIONS} s ON s.id = ev.subscription_id
UNION ALL
SELECT 'end', NULL, NULL,
       metering_ingest_refuse_partial(
           %(whole)s AND (SELECT count(*) FROM new_keys) > 0
           AND (SELECT count(*) FROM new_keys) + (SELECT count(*) FROM existing) < cardinality(%(payload_hashes)b::text[])
       )::text || ':' || (SELECT go FROM decision)::text,
       NULL, NULL, NULL, NULL
"""
# Keys another request committed while the store statement ran (a retry racing its original).
_EXISTING_EVENTS = f"""
    SELECT k.external_subscription_id, k.transaction_id, k.payload_hash, e.subscription_id,
           s.account_link_id, e."timestamp", e.created_at
      FROM unnest(%s::text[], %s::text[]) AS i (external_subscription_id, transaction_id)
     CROSS JOIN LATERAL ({_KEY_OF_ROW.format(service="%s")}) AS k
      JOIN {_EVENTS} e ON e.id = k.event_id AND e."timestamp" = k."timestamp"
      JOIN {_SUBSCRIPTIONS} s ON s.id = e.subscription_id
"""
# SQLSTATE of metering_ingest_refuse_partial (migration 0009).
_PARTIAL_REFUSED = "FB001"


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
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return _ingest_portably(service=service, events=events, errors=errors)
    if not errors:
        stored = _ingest_optimistically(service=service, events=events)
        if stored is not None:
            return stored
    for attempt in range(_TRANSIENT_RETRIES):
        try:
            with transaction.atomic():
                return _ingest_postgresql(service=service, events=events, errors=dict(errors))
        except (DatabaseError, psycopg.Error) as exc:
            # Keys are inserted in one global order, so ingest never deadlocks with itself;
            # a deadlock or serialization failure against another writer is retried.
            if not _is_transient(exc) or attempt == _TRANSIENT_RETRIES - 1:
                raise
        except _Changed:
            if attempt == _TRANSIENT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


_TRANSIENT_RETRIES = 3


class _Changed(Exception):
    """A metric changed between the locked read and the store: decide again."""


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


def _key(event: ParsedEvent) -> _EventKey:
    return event.external_subscription_id, event.transaction_id


@dataclass(slots=True)
class _Outcome:
    """What the store statement did: ``go`` false = nothing written."""

    go: bool
    stored: dict[_EventKey, StoredEvent]
    conflicts: set[_EventKey]  # stored under another payload: value_already_exist
    unseen: list[_EventKey]  # committed by a concurrent request during the statement


def _ingest_optimistically(*, service: Service, events: list[tuple[int, ParsedEvent]]) -> list[StoredEvent] | None:
    """Store valid events in two autocommitted statements (new events and identical
    resends alike), or return None.

    The general path costs five round trips (BEGIN, a locking read, the store, COMMIT
    and Django's connection health check) and holds its locks and uncommitted keys for
    all of them, so a retry racing its original waited on it. Here the read takes no
    lock and the store (``_STORE``) is its own transaction: it re-reads the subscriptions
    ``FOR KEY SHARE`` (a window being closed waits for it exactly as on the general path)
    and writes only if they and the metrics still look as they did when the events were
    checked. Invalid events raise EventsRejected straight from the unlocked read: a 422
    is not a write.

    None means "not settled here" (a subscription or metric changed meanwhile, or a
    concurrent request claimed some of a batch's keys but not all): the caller runs the
    general path, which sorts that out under its locks. A connection the database
    dropped (a restart) is reopened once; the store is idempotent, so repeating it cannot
    double-count. Inside a caller's transaction the statements join it, under a
    savepoint so that a refused store undoes only itself.
    """
    for attempt in range(2):
        try:
            if connection.in_atomic_block:
                with transaction.atomic():
                    return _try_optimistically(service=service, events=events)
            return _try_optimistically(service=service, events=events)
        except _RefusedPartial:
            return None
        except psycopg.OperationalError:
            reconnectable = not connection.in_atomic_block and connection.connection is not None and (
                connection.connection.closed)
            if attempt or not reconnectable:
                raise
            connection.close()
    raise AssertionError("unreachable")


class _RefusedPartial(Exception):
    """The store statement refused to claim only part of a batch's keys (see ``_STORE``)."""


def _try_optimistically(*, service: Service, events: list[tuple[int, ParsedEvent]]) -> list[StoredEvent] | None:
    with _raw_cursor() as cursor:
        subscriptions, metrics = _resolve(cursor, _RESOLVE, service=service, events=events)
        errors: dict[int, dict[str, Any]] = {}
        resolved = _check_events(events, subscriptions, metrics, errors)
        if errors:
            raise EventsRejected(errors)
        try:
            outcome = _store(cursor, service=service, resolved=resolved, metrics=metrics, whole=True)
        except psycopg.Error as exc:
            if exc.sqlstate == _PARTIAL_REFUSED:
                raise _RefusedPartial() from exc
            raise
        if not outcome.go and not outcome.conflicts:
            return None  # a subscription or metric changed: decide again under locks
        _settle_unseen(cursor, service=service, resolved=resolved, outcome=outcome)
    return _result(resolved, outcome)


def _ingest_postgresql(*, service: Service, events: list[tuple[int, ParsedEvent]],
                       errors: dict[int, dict[str, Any]]) -> list[StoredEvent]:
    """The general path, in the caller's transaction: resolve under locks, then store."""
    with _raw_cursor() as cursor:
        subscriptions, metrics = _resolve(cursor, _RESOLVE_AND_LOCK, service=service, events=events)
        resolved = _check_events(events, subscriptions, metrics, errors)
        if errors:
            raise EventsRejected(errors)
        outcome = _store(cursor, service=service, resolved=resolved, metrics=metrics, whole=False)
        if not outcome.go and not outcome.conflicts:
            raise _Changed()
        _settle_unseen(cursor, service=service, resolved=resolved, outcome=outcome)
    return _result(resolved, outcome)


def _result(resolved: list[Resolved], outcome: _Outcome) -> list[StoredEvent]:
    if outcome.conflicts:
        raise EventsRejected({index: {"transaction_id": [ErrorCode.VALUE_ALREADY_EXIST]}
                              for index, event, _, _ in resolved if _key(event) in outcome.conflicts})
    return [outcome.stored[_key(e)] for _, e, _, _ in resolved]


def _resolve(cursor: psycopg.Cursor[Any], statement: str, *, service: Service,
             events: list[tuple[int, ParsedEvent]]) -> tuple[dict[str, list[_Sub]], dict[str, tuple[str, str]]]:
    """The events' subscriptions (by external id) and metrics (by code)."""
    external_ids = list({event.external_subscription_id for _, event in events})
    codes = list({event.code for _, event in events})
    cursor.execute(statement, [service.id, codes, service.id, external_ids, str(SubscriptionStatus.CANCELED)],
                   prepare=True)
    subscriptions: dict[str, list[_Sub]] = {}
    metrics: dict[str, tuple[str, str]] = {}
    for metric_rows, external_id, sub_id, link_id, status, started_at, ends_at, closed_before in cursor:
        metrics = {code: (aggregation, field_name) for code, aggregation, field_name in metric_rows or []}
        if sub_id is not None:
            subscriptions.setdefault(external_id, []).append(
                _Sub(sub_id, link_id, status, started_at, ends_at, closed_before))
    return subscriptions, metrics


def _store(cursor: psycopg.Cursor[Any], *, service: Service, resolved: list[Resolved],
           metrics: dict[str, tuple[str, str]], whole: bool) -> _Outcome:
    """Run ``_STORE`` for checked events (see there)."""
    now = timezone.now()
    # One global order of unique keys (the key table's): concurrent requests that overlap
    # take the index entries in the same order and so can wait for each other but never deadlock.
    in_key_order = sorted(resolved, key=lambda r: (r[1].transaction_id, r[1].external_subscription_id))
    chosen = {s.id: s for _, _, s, _ in resolved}
    codes = sorted({e.code for _, e, _, _ in resolved})
    cursor.execute(_STORE, {
        "service_id": service.id, "now": now, "whole": whole,
        "subscription_ids": [s.id for _, _, s, _ in in_key_order],
        "external_subscription_ids": [e.external_subscription_id for _, e, _, _ in in_key_order],
        "codes": [e.code for _, e, _, _ in in_key_order],
        "transaction_ids": [e.transaction_id for _, e, _, _ in in_key_order],
        "timestamps": [e.timestamp for _, e, _, _ in in_key_order],
        "properties": [e.properties_json.decode() for _, e, _, _ in in_key_order],
        "values": [v for _, _, _, v in in_key_order],
        "precise_totals": [e.precise_total_amount_cents for _, e, _, _ in in_key_order],
        "payload_hashes": [e.payload_hash for _, e, _, _ in in_key_order],
        "sub_ids": list(chosen),
        "sub_statuses": [s.status for s in chosen.values()],
        "sub_started": [s.started_at for s in chosen.values()],
        "sub_ends": [s.ends_at for s in chosen.values()],
        "sub_closed_before": [s.closed_before for s in chosen.values()],
        "metric_codes": codes,
        "metric_aggregations": [metrics[code][0] for code in codes],
        "metric_fields": [metrics[code][1] for code in codes],
    }, prepare=True)
    events = {_key(e): (e, s) for _, e, s, _ in resolved}
    outcome = _Outcome(go=False, stored={}, conflicts=set(), unseen=[])
    for kind, external_id, transaction_id, payload_hash, subscription_id, link_id, timestamp, created_at in cursor:
        if kind == "end":
            outcome.go = payload_hash.endswith(":true")
            continue
        key = (external_id, transaction_id)
        event, subscription = events[key]
        if kind == "new":
            outcome.stored[key] = StoredEvent(event, subscription.id, subscription.account_link_id,
                                              event.timestamp, now)
        elif payload_hash == event.payload_hash:
            outcome.stored[key] = StoredEvent(event, subscription_id, link_id, timestamp, created_at)
        else:
            outcome.conflicts.add(key)
    if outcome.go:
        outcome.unseen = [key for key in events if key not in outcome.stored]
    return outcome


def _settle_unseen(cursor: psycopg.Cursor[Any], *, service: Service, resolved: list[Resolved],
                   outcome: _Outcome) -> None:
    """Keys a concurrent request committed during the store statement (only a race gets
    here): an identical payload is a resend, answered with the stored event; another
    payload is ``value_already_exist``."""
    if not outcome.unseen:
        return
    cursor.execute(_EXISTING_EVENTS, [[k[0] for k in outcome.unseen], [k[1] for k in outcome.unseen], service.id])
    existing = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
    for _, event, _, _ in resolved:
        key = _key(event)
        if key not in outcome.unseen:
            continue
        payload_hash, subscription_id, link_id, timestamp, created_at = existing[key]
        if payload_hash != event.payload_hash:
            outcome.conflicts.add(key)
        else:
            outcome.stored[key] = StoredEvent(event, subscription_id, link_id, timestamp, created_at)


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
    UsageEventKey.objects.bulk_create([
        UsageEventKey(service=service, transaction_id=row.transaction_id,
                      external_subscription_id=row.external_subscription_id, event_id=row.pk,
                      timestamp=row.timestamp, payload_hash=row.payload_hash)
        for row in new_rows])
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
