"""Lago's lenient event mode (``Service.lenient_events``).

Lago stores every well-formed event and checks it against the catalogue afterwards,
reporting what did not match with an ``events.errors`` webhook. By default this service
refuses such an event with a 422 instead (the app learns at once and every accepted event
is billed). A service that sends usage before its subscriptions exist turns lenient mode
on: an event whose only problems are *what it refers to* — an unknown metric code
(Lago's ``invalid_code``), no subscription of that id running at its timestamp
(``missing_subscription``, ours: Lago accepts those silently), or the metric's property
missing (``missing_aggregation_property``) — is accepted and kept as an
``UnmatchedEvent``. It is never rated: not now, and not when a subscription later appears
(docs/api.md "Lenient events"). Malformed events are still refused.

``report_event_errors`` (beat) sends one ``events.errors`` webhook per service and run,
listing the transaction ids reported for the first time, as Lago's post-validation job.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing_kit.errors import ErrorCode
from identity.models import Service
from metering.event_schema import ParsedEvent
from metering.models import UnmatchedEvent
from metering.services.ingest import EventsRejected, StoredEvent, ingest_events
from webhooks.event_types import WebhookType
from webhooks.services import record_event

INVALID_CODE = "invalid_code"
MISSING_AGGREGATION_PROPERTY = "missing_aggregation_property"
MISSING_SUBSCRIPTION = "missing_subscription"
# Lago's events.errors members (invalid_filter_values and missing_group_key are always
# empty here: filters and groups are not built), then ours.
ERROR_KINDS = (INVALID_CODE, MISSING_AGGREGATION_PROPERTY, "invalid_filter_values", "missing_group_key",
               MISSING_SUBSCRIPTION)

_NO_SUBSCRIPTION = {ErrorCode.SUBSCRIPTION_NOT_FOUND, ErrorCode.BEFORE_SUBSCRIPTION_START,
                    ErrorCode.AFTER_SUBSCRIPTION_END}


def lenient_kind(errors: dict[str, Any]) -> str | None:
    """The events.errors category of an event refused for these ``error_details`` when
    only what it refers to is missing; None when anything else is wrong with it."""
    kinds = []
    for field, codes in errors.items():
        if field == "code" and codes == [ErrorCode.BILLABLE_METRIC_NOT_FOUND]:
            kinds.append(INVALID_CODE)
        elif field in ("external_subscription_id", "timestamp") and isinstance(codes, list) and set(
                codes) <= _NO_SUBSCRIPTION:
            kinds.append(MISSING_SUBSCRIPTION)
        elif field == "properties" and isinstance(codes, dict) and all(
                value == [ErrorCode.VALUE_IS_MANDATORY] for value in codes.values()):
            kinds.append(MISSING_AGGREGATION_PROPERTY)
        else:
            return None
    for kind in ERROR_KINDS:  # one category per event, the first as Lago checks them
        if kind in kinds:
            return kind
    return None


def ingest(*, service: Service, events: list[tuple[int, ParsedEvent]],
           errors: dict[int, dict[str, Any]] | None = None) -> list[StoredEvent]:
    """``ingest_events``, and in lenient mode the events refused only for what they refer
    to are kept as unmatched (all or nothing still: one other problem refuses the request).
    Returns the request's events in order; an unmatched one has no subscription nor customer."""
    try:
        return ingest_events(service=service, events=events, errors=errors)
    except EventsRejected as exc:
        if not service.lenient_events:
            raise
        refused = exc.errors
        kinds = {index: lenient_kind(details) for index, details in refused.items()}
        strict = {index: refused[index] for index, kind in kinds.items() if kind is None}
        if strict:
            raise EventsRejected(strict) from None
    with transaction.atomic():
        matched = [(index, event) for index, event in events if index not in kinds]
        stored = iter(ingest_events(service=service, events=matched) if matched else [])
        result = []
        for index, event in events:
            if index in kinds:
                result.append(_keep_unmatched(service=service, index=index, event=event,
                                              kind=kinds[index] or "", details=refused[index]))
            else:
                result.append(next(stored))
        return result


def _keep_unmatched(*, service: Service, index: int, event: ParsedEvent, kind: str,
                    details: dict[str, Any]) -> StoredEvent:
    row, created = UnmatchedEvent.objects.get_or_create(
        service=service, external_subscription_id=event.external_subscription_id,
        transaction_id=event.transaction_id,
        defaults={"code": event.code, "timestamp": event.timestamp, "properties": event.properties,
                  "precise_total_amount_cents": event.precise_total_amount_cents,
                  "payload_hash": event.payload_hash, "error": kind, "error_details": details},
    )
    if not created and row.payload_hash != event.payload_hash:
        # As for stored events: the same key with another payload is refused.
        raise EventsRejected({index: {"transaction_id": [ErrorCode.VALUE_ALREADY_EXIST]}})
    return StoredEvent(event, None, None, row.timestamp, row.created_at)


def report_event_errors(*, limit: int = 10_000) -> int:
    """One ``events.errors`` webhook per service for the unmatched events not yet reported
    (at most ``limit`` per run; the rest go in the next run). Returns the webhooks recorded."""
    sent = 0
    service_ids = (UnmatchedEvent.objects.filter(reported_at__isnull=True)
                   .values_list("service_id", flat=True).distinct())
    for service_id in list(service_ids):
        with transaction.atomic():
            rows = list(UnmatchedEvent.objects.select_for_update(skip_locked=True)
                        .filter(service_id=service_id, reported_at__isnull=True)
                        .order_by("id")[:limit])
            if not rows:
                continue
            lists: dict[str, list[str]] = defaultdict(list)
            for row in rows:
                lists[row.error].append(row.transaction_id)
            record_event(service=Service.objects.get(pk=service_id), webhook_type=WebhookType.EVENTS_ERRORS,
                         object_type="events_errors", payload={kind: lists.get(kind, []) for kind in ERROR_KINDS})
            UnmatchedEvent.objects.filter(pk__in=[row.pk for row in rows]).update(reported_at=timezone.now())
            sent += 1
    return sent
