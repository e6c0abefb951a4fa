"""``/billable_metrics``, ``/plans``, ``/subscriptions`` and ``/events``.

Events are the hot path: their bodies are decoded and validated by msgspec
(``event_schema``), stored with one set-based INSERT, and answered with bytes
encoded by msgspec; DRF only authenticates and handles errors there.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, time
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

import msgspec
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.errors import BadRequest, ErrorCode, NotFound, ValidationFailed
from billing_kit.formatting import iso_millis, iso_seconds
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, QueryParam, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, obj, page, array
from identity.authentication import CachedApiKeyAuthentication
from identity.models import Service
from metering import event_schema, lifecycle, selectors, services, tasks
from metering.api.customers import SUBSCRIPTION_STATUSES, requested_statuses
from metering.api.inputs import (
    BillableMetricInput,
    BillableMetricUpdateInput,
    PlanInput,
    PlanUpdateInput,
    SubscriptionInput,
    SubscriptionUpdateInput,
)
from metering.models import BillableMetric, Plan, Subscription, SubscriptionStatus
from metering.renderers import event_lago_id, render_billable_metric, render_plan, render_subscription
from .schemas import (
    BILLABLE_METRIC, EVENT, EVENT_ESTIMATE_INPUT, EVENT_INPUT, LIFETIME_USAGE, PLAN, SUBSCRIPTION,
)

CODE = OpenApiParameter("code", OpenApiTypes.STR, OpenApiParameter.PATH, description="The object's code.")
SUBSCRIPTION_ID = OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                   description="The subscription's id in the calling app.")


def body(name: str, root: str, serializer: serializers.BaseSerializer) -> Any:
    return inline_serializer(name, {root: serializer})


# --------------------------------------------------------------------------- billable metrics


def metric_or_404(service: Service, code: str) -> BillableMetric:
    metric = selectors.get_metric(service=service, code=code)
    if metric is None:
        raise NotFound(ErrorCode.BILLABLE_METRIC_NOT_FOUND)
    return metric


class BillableMetricListView(ServiceAPIView):
    @extend_schema(operation_id="billable_metrics_create",
                   request=body("BillableMetricBody", "billable_metric", BillableMetricInput()),
                   responses={200: envelope("billable_metric", BILLABLE_METRIC), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = BillableMetricInput(data=require_root(request, "billable_metric"))
        payload.is_valid(raise_exception=True)
        metric = services.create_billable_metric(service=self.service, data=payload.validated_data)
        return Response({"billable_metric": render_billable_metric(metric)})

    @documented(operation_id="billable_metrics_list", query=PAGINATION,
                responses={200: page("billable_metrics", BILLABLE_METRIC), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        items, meta = paginate(self.query(request), selectors.metrics(service=self.service))
        return Response({"billable_metrics": [render_billable_metric(m) for m in items], "meta": meta})


class BillableMetricDetailView(ServiceAPIView):
    @extend_schema(operation_id="billable_metrics_retrieve", parameters=[CODE],
                   responses={200: envelope("billable_metric", BILLABLE_METRIC), **ERRORS})
    def get(self, request: Request, code: str) -> Response:
        return Response({"billable_metric": render_billable_metric(metric_or_404(self.service, code))})

    @extend_schema(operation_id="billable_metrics_update", parameters=[CODE],
                   request=body("BillableMetricUpdateBody", "billable_metric", BillableMetricUpdateInput()),
                   responses={200: envelope("billable_metric", BILLABLE_METRIC), **ERRORS})
    def put(self, request: Request, code: str) -> Response:
        metric = metric_or_404(self.service, code)
        payload = BillableMetricUpdateInput(data=require_root(request, "billable_metric"))
        payload.is_valid(raise_exception=True)
        metric = services.update_billable_metric(metric=metric, data=payload.validated_data)
        return Response({"billable_metric": render_billable_metric(metric)})

    @extend_schema(operation_id="billable_metrics_destroy", parameters=[CODE],
                   responses={200: envelope("billable_metric", BILLABLE_METRIC), **ERRORS, 405: LAGO_OBJECT})
    def delete(self, request: Request, code: str) -> Response:
        metric = metric_or_404(self.service, code)
        rendered = render_billable_metric(metric)
        services.delete_billable_metric(metric=metric)
        return Response({"billable_metric": rendered})


# --------------------------------------------------------------------------- plans


def plan_or_404(service: Service, code: str) -> Plan:
    plan = selectors.get_plan(service=service, code=code)
    if plan is None:
        raise NotFound(ErrorCode.PLAN_NOT_FOUND)
    return plan


class PlanListView(ServiceAPIView):
    @extend_schema(operation_id="plans_create", request=body("PlanBody", "plan", PlanInput()),
                   responses={200: envelope("plan", PLAN), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = PlanInput(data=require_root(request, "plan"))
        payload.is_valid(raise_exception=True)
        plan = services.create_plan(service=self.service, data=payload.validated_data)
        return Response({"plan": render_plan(plan_or_404(self.service, plan.code))})

    @documented(operation_id="plans_list", query=PAGINATION,
                responses={200: page("plans", PLAN), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        items, meta = paginate(self.query(request), selectors.plans(service=self.service))
        return Response({"plans": [render_plan(p) for p in items], "meta": meta})


class PlanDetailView(ServiceAPIView):
    @extend_schema(operation_id="plans_retrieve", parameters=[CODE], responses={200: envelope("plan", PLAN), **ERRORS})
    def get(self, request: Request, code: str) -> Response:
        return Response({"plan": render_plan(plan_or_404(self.service, code))})

    @extend_schema(operation_id="plans_update", parameters=[CODE],
                   request=body("PlanUpdateBody", "plan", PlanUpdateInput()),
                   responses={200: envelope("plan", PLAN), **ERRORS})
    def put(self, request: Request, code: str) -> Response:
        plan = plan_or_404(self.service, code)
        payload = PlanUpdateInput(data=require_root(request, "plan"))
        payload.is_valid(raise_exception=True)
        plan = services.update_plan(plan=plan, data=payload.validated_data)
        return Response({"plan": render_plan(plan_or_404(self.service, plan.code))})

    @extend_schema(operation_id="plans_destroy", parameters=[CODE],
                   responses={200: envelope("plan", PLAN), **ERRORS},
                   description="Lago's delete: the plan is returned pending_deletion (plan.deleted is sent); "
                               "its active subscriptions are then terminated, its pending ones canceled, "
                               "and it disappears (its code can be used again).")
    def delete(self, request: Request, code: str) -> Response:
        plan = services.prepare_plan_deletion(plan=plan_or_404(self.service, code))
        rendered = render_plan(plan_or_404(self.service, plan.code))
        # Nothing to end: discarded at once. Otherwise a task ends its subscriptions (every
        # rating run finishes it too if that task is lost).
        if not services.discard_plan(plan_id=plan.id, now=timezone.now()):
            transaction.on_commit(tasks.finish_plan_deletions.delay, robust=True)
        return Response({"plan": rendered})


# --------------------------------------------------------------------------- subscriptions

STATUS_ONE = QueryParam("status", "Which of the subscriptions with this id (default: active).",
                        enum=[s for s, _ in SubscriptionStatus.choices])


def subscription_or_404(service: Service, external_id: str, status: str = SubscriptionStatus.ACTIVE
                        ) -> Subscription:
    if status not in selectors.SUBSCRIPTION_STATUSES:
        raise ValidationFailed({"status": [ErrorCode.VALUE_IS_INVALID]})
    subscription = selectors.get_subscription(service=service, external_id=external_id, status=status)
    if subscription is None:
        raise NotFound(ErrorCode.SUBSCRIPTION_NOT_FOUND)
    return subscription


class SubscriptionListView(ServiceAPIView):
    @extend_schema(operation_id="subscriptions_create",
                   request=body("SubscriptionBody", "subscription", SubscriptionInput()),
                   responses={200: envelope("subscription", SUBSCRIPTION), **ERRORS},
                   description="Create; an unknown customer is created; same external_id and plan returns "
                               "the existing subscription; another plan changes its plan.")
    def post(self, request: Request) -> Response:
        payload = SubscriptionInput(data=require_root(request, "subscription"))
        payload.is_valid(raise_exception=True)
        result = lifecycle.create_subscription(service=self.service, data=payload.validated_data)
        return Response({"subscription": render_subscription(result.subscription)})

    @documented(operation_id="subscriptions_list",
                query=(*PAGINATION, *SUBSCRIPTION_STATUSES,
                       QueryParam("external_customer_id", "Only this customer's subscriptions."),
                       QueryParam("plan_code", "Only this plan.")),
                responses={200: page("subscriptions", SUBSCRIPTION), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        query = self.query(request)
        subscriptions = selectors.list_subscriptions(
            service=self.service, statuses=requested_statuses(query),
            external_customer_id=query.get("external_customer_id"),
            plan_code=query.get("plan_code"),
        )
        items, meta = paginate(query, subscriptions)
        return Response({"subscriptions": [render_subscription(s) for s in items], "meta": meta})


class SubscriptionDetailView(ServiceAPIView):
    @documented(operation_id="subscriptions_retrieve", parameters=[SUBSCRIPTION_ID], query=[STATUS_ONE],
                responses={200: envelope("subscription", SUBSCRIPTION), **ERRORS})
    def get(self, request: Request, external_id: str) -> Response:
        status = self.query(request).get("status") or SubscriptionStatus.ACTIVE
        return Response({"subscription": render_subscription(
            subscription_or_404(self.service, external_id, status))})

    @documented(operation_id="subscriptions_update", parameters=[SUBSCRIPTION_ID], query=[STATUS_ONE],
                request=body("SubscriptionUpdateBody", "subscription", SubscriptionUpdateInput()),
                responses={200: envelope("subscription", SUBSCRIPTION), **ERRORS})
    def put(self, request: Request, external_id: str) -> Response:
        status = self.query(request).get("status") or SubscriptionStatus.ACTIVE
        subscription = subscription_or_404(self.service, external_id, status)
        payload = SubscriptionUpdateInput(data=require_root(request, "subscription"))
        payload.is_valid(raise_exception=True)
        subscription = services.update_subscription(subscription=subscription, data=payload.validated_data)
        return Response({"subscription": render_subscription(subscription)})

    @documented(
        operation_id="subscriptions_terminate",
        parameters=[SUBSCRIPTION_ID],
        query=[QueryParam("status", "pending cancels a pending subscription (default: active).",
                          enum=["active", "pending"]),
               QueryParam("on_termination_credit_note",
                          "Advance plans: credit (default) or refund give back the unused part of the period's"
                          " fee as a credit line; skip gives nothing back. offset is treated as credit.",
                          enum=["credit", "refund", "skip", "offset"]),
               QueryParam("on_termination_invoice", "Accepted for compatibility; the final window is rated.")],
        responses={200: envelope("subscription", SUBSCRIPTION), **ERRORS})
    def delete(self, request: Request, external_id: str) -> Response:
        status = self.query(request).get("status") or SubscriptionStatus.ACTIVE
        if status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING):
            raise ValidationFailed({"status": [ErrorCode.VALUE_IS_INVALID]})
        credit_note = self.query(request).get("on_termination_credit_note") or None
        if credit_note not in (None, "credit", "refund", "skip", "offset"):
            raise ValidationFailed({"on_termination_credit_note": [ErrorCode.VALUE_IS_INVALID]})
        subscription = subscription_or_404(self.service, external_id, status)
        # Closes the final window at once (usage frozen, final fee or credit written).
        subscription = lifecycle.terminate_subscription(subscription=subscription, credit_note=credit_note)
        return Response({"subscription": render_subscription(subscription)})


class SubscriptionLifetimeUsageView(ServiceAPIView):
    @extend_schema(operation_id="subscriptions_lifetime_usage", parameters=[SUBSCRIPTION_ID],
                   responses={200: envelope("lifetime_usage", LIFETIME_USAGE), **ERRORS},
                   description="Lago's lifetime usage of the active subscription: usage of its closed windows "
                               "(invoiced through Odoo) and of the open one. Usage thresholds are not built "
                               "(usage_thresholds is empty; updating the historical amount is 405).")
    def get(self, request: Request, external_id: str) -> Response:
        subscription = subscription_or_404(self.service, external_id)
        usage = selectors.lifetime_usage(subscription=subscription)
        return Response({"lifetime_usage": {
            "lago_id": str(uuid.uuid5(LIFETIME_USAGE_NAMESPACE, str(subscription.id))),
            "lago_subscription_id": str(subscription.id),
            "external_subscription_id": subscription.external_id,
            "external_historical_usage_amount_cents": 0,
            "invoiced_usage_amount_cents": usage.invoiced_amount_cents,
            "current_usage_amount_cents": usage.current_amount_cents,
            "from_datetime": iso_seconds(subscription.started_at),
            "to_datetime": iso_seconds(subscription.current_period_end),
            "usage_thresholds": [],
        }})


# A lifetime usage is one per subscription here: its id is derived from the subscription's.
LIFETIME_USAGE_NAMESPACE = uuid.UUID("0c7b6a52-4f1e-5d3a-9e8b-7a6c5d4e3f21")


# --------------------------------------------------------------------------- events

_response_encoder = msgspec.json.Encoder(decimal_format="number")


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def render_stored_event(service_id: int, stored: services.StoredEvent,
                        _formatted: dict[tuple[Callable[[Any], str | None], Any], str | None] | None = None
                        ) -> dict[str, Any]:
    """Lago's event object. ``_formatted`` memoises the per-batch repeated strings
    (subscription/customer ids, instants) when rendering a whole batch."""
    memo = _formatted if _formatted is not None else {}

    def text(value: Any, formatter: Callable[[Any], str | None]) -> str | None:
        key = (formatter, value)
        if key not in memo:
            memo[key] = formatter(value)
        return memo[key]

    event = stored.event
    return {
        "lago_id": event_lago_id(service_id=service_id, external_subscription_id=event.external_subscription_id,
                                 transaction_id=event.transaction_id),
        "transaction_id": event.transaction_id,
        "lago_customer_id": None if stored.account_link_id is None else text(stored.account_link_id, str),
        "code": event.code,
        "timestamp": text(stored.timestamp, iso_millis),
        "precise_total_amount_cents": _decimal_text(event.precise_total_amount_cents),
        "properties": event.properties,
        "lago_subscription_id": None if stored.subscription_id is None else text(stored.subscription_id, str),
        "external_subscription_id": event.external_subscription_id,
        "created_at": text(stored.created_at, iso_seconds),
    }


def _json(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(_response_encoder.encode(payload), status=status, content_type="application/json")


def _decode(body: bytes) -> Any:
    try:
        return event_schema.decode_json_body(body)
    except event_schema.MalformedJSON:
        raise BadRequest("invalid JSON body", code=ErrorCode.INVALID_JSON) from None


def create_event(*, service: Service, body: bytes) -> HttpResponse:
    """``POST /events`` for an authenticated service (shared by the view and the fast path)."""
    data = _decode(body)
    raw = data.get("event") if isinstance(data, dict) else None
    if not raw:
        raise BadRequest("param is missing or the value is empty: event")
    event, errors = event_schema.validate_event(raw, received_at=timezone.now())
    if errors:
        raise ValidationFailed(errors)
    assert event is not None  # validate_event returns an event exactly when there are no errors
    try:
        stored = services.ingest_events_leniently(service=service, events=[(0, event)])
    except services.EventsRejected as exc:
        raise ValidationFailed(exc.errors[0]) from None
    return _json({"event": render_stored_event(service.id, stored[0])})


def create_event_batch(*, service: Service, body: bytes) -> HttpResponse:
    """``POST /events/batch`` for an authenticated service (shared by the view and the fast path)."""
    data = _decode(body)
    if not isinstance(data, dict) or data.get("events") is None:
        raise BadRequest("param is missing or the value is empty: events")
    events, errors = event_schema.validate_event_batch(
        data["events"], received_at=timezone.now(), max_events=settings.EVENTS_BATCH_MAX_LENGTH)
    if "events" in errors:
        raise ValidationFailed(errors)
    try:
        stored = services.ingest_events_leniently(
            service=service, events=events, errors={int(index): details for index, details in errors.items()})
    except services.EventsRejected as exc:
        raise ValidationFailed({str(index): details for index, details in sorted(exc.errors.items())}) from None
    memo: dict[tuple[Callable[[Any], str | None], Any], str | None] = {}
    return _json({"events": [render_stored_event(service.id, s, memo) for s in stored]})


class EventCreateView(ServiceAPIView):
    authentication_classes = [CachedApiKeyAuthentication]

    @extend_schema(operation_id="events_create",
                   request={"application/json": envelope("event", EVENT_INPUT)},
                   responses={200: envelope("event", EVENT), 400: LAGO_OBJECT, 401: LAGO_OBJECT, 422: LAGO_OBJECT},
                   description="Validated synchronously: 200 means the event will be billed. An identical "
                               "resend is a success counted once; another payload with the same "
                               "transaction_id is 422 value_already_exist.")
    def post(self, request: Request) -> HttpResponse:
        return create_event(service=self.service, body=request.body)

    @documented(operation_id="events_list",
                query=(*PAGINATION,
                       QueryParam("code", "Only events of this billable metric code."),
                       QueryParam("external_subscription_id", "Only events of this subscription."),
                       QueryParam("timestamp_from", "ISO 8601; events at or after this instant."),
                       QueryParam("timestamp_to", "ISO 8601; events at or before this instant."),
                       QueryParam("timestamp_from_started_at",
                                  "true: only events at or after their subscription's start.", enum=["true", "false"])),
                responses={200: page("events", EVENT), 401: LAGO_OBJECT, 422: LAGO_OBJECT},
                description="The calling service's events, newest timestamp first (Lago's order).")
    def get(self, request: Request) -> HttpResponse:
        query = self.query(request)
        events = selectors.list_events(
            service=self.service, code=query.get("code"),
            external_subscription_id=query.get("external_subscription_id"),
            timestamp_from=_instant(query.get("timestamp_from"), "timestamp_from"),
            timestamp_to=_instant(query.get("timestamp_to"), "timestamp_to"),
            from_subscription_start=_flag(query.get("timestamp_from_started_at"), "timestamp_from_started_at"),
        )
        items, meta = paginate(query, events)
        memo: dict[tuple[Callable[[Any], str | None], Any], str | None] = {}
        return _json({"events": [render_stored_event(self.service.id, _stored(e), memo) for e in items],
                      "meta": meta})


def _instant(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    parsed: datetime | None = None
    try:
        parsed = parse_datetime(raw)
        day = parse_date(raw) if parsed is None else None
        if day is not None:
            parsed = datetime.combine(day, time.min)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationFailed({name: [ErrorCode.INVALID_FORMAT]})
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt_timezone.utc)


def _flag(raw: str | None, name: str) -> bool:
    if raw in (None, "", "false"):
        return False
    if raw == "true":
        return True
    raise ValidationFailed({name: [ErrorCode.VALUE_IS_INVALID]})


def _stored(event: Any) -> services.StoredEvent:
    parsed = event_schema.ParsedEvent(
        transaction_id=event.transaction_id, external_subscription_id=event.external_subscription_id,
        code=event.code, timestamp=event.timestamp, properties=event.properties,
        properties_json=b"", precise_total_amount_cents=event.precise_total_amount_cents,
        payload_hash=event.payload_hash,
    )
    return services.StoredEvent(parsed, event.subscription_id, event.subscription.account_link_id,
                                event.timestamp, event.created_at)


class EventEstimateFeesView(ServiceAPIView):
    @extend_schema(operation_id="events_estimate_fees",
                   request={"application/json": envelope("event", EVENT_ESTIMATE_INPUT)},
                   responses={200: obj({"fees": "array"}), **ERRORS},
                   description="Lago's estimate for charges paid in advance. None is (pay_in_advance charges are "
                               "refused), so a valid event gets Lago's 422 "
                               "{\"code\": [\"does_not_match_an_instant_charge\"]}.")
    def post(self, request: Request) -> HttpResponse:
        raw = require_root(request, "event")
        # Lago validates the event as one to create, with a transaction_id of its own.
        event, errors = event_schema.validate_event({**raw, "transaction_id": "estimate"},
                                                    received_at=timezone.now())
        if errors:
            raise ValidationFailed(errors)
        assert event is not None
        services.estimate_fees(service=self.service, event=event)
        return _json({"fees": []})


class EventBatchView(ServiceAPIView):
    authentication_classes = [CachedApiKeyAuthentication]

    @extend_schema(operation_id="events_batch",
                   request={"application/json": obj({"events": {**array(EVENT_INPUT), "minItems": 1,
                                           "maxItems": settings.EVENTS_BATCH_MAX_LENGTH}})},
                   responses={200: obj({"events": array(EVENT)}), 400: LAGO_OBJECT, 401: LAGO_OBJECT, 422: LAGO_OBJECT},
                   description="All or nothing; at most EVENTS_BATCH_MAX_LENGTH (100) events; errors keyed "
                               "by the string index of the event.")
    def post(self, request: Request) -> HttpResponse:
        return create_event_batch(service=self.service, body=request.body)


class EventDetailView(ServiceAPIView):
    @documented(operation_id="events_retrieve",
                parameters=[OpenApiParameter("transaction_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                             description="The event's transaction_id.")],
                query=[QueryParam("external_subscription_id",
                                  "Disambiguates a transaction_id used on several subscriptions.")],
                responses={200: envelope("event", EVENT), **ERRORS})
    def get(self, request: Request, transaction_id: str) -> HttpResponse:
        event = selectors.get_event(service=self.service, transaction_id=transaction_id,
                                    external_subscription_id=self.query(request).get("external_subscription_id"))
        if event is None:
            raise NotFound(ErrorCode.EVENT_NOT_FOUND)
        return _json({"event": render_stored_event(self.service.id, _stored(event))})
