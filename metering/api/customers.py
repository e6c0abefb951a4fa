"""A customer's own routes: ``/customers/{external_id}`` (read, soft delete), its
subscriptions, the usage of its open window and of its closed ones (past usage).

They live here, above identity, because deleting a customer ends its subscriptions and
usage is metering's; identity's list/upsert views stay in ``identity.api``.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.errors import ErrorCode, NotAllowed, NotFound, ValidationFailed
from billing_kit.formatting import iso_seconds
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, Query, QueryParam, documented
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page, ref
from identity import selectors as identity_selectors
from identity.models import AccountLink, Service
from identity.renderers import render_customer
from metering import lifecycle, selectors, services
from metering.event_schema import canonical_decimal
from metering.models import Subscription, SubscriptionStatus
from metering.pricing import quantize_amount
from metering.rating import ChargeUsage, cents, compute_projected_usage, compute_usage
from metering.renderers import render_subscription
from .schemas import CUSTOMER_USAGE, PROJECTED_USAGE, SUBSCRIPTION

EXTERNAL_ID = OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                               description="The customer's id in the calling app.")
SUBSCRIPTION_STATUSES = (
    QueryParam("status[]", "Statuses to include (default: active).", many=True,
               enum=[s for s, _ in SubscriptionStatus.choices]),
    QueryParam("status", "Alias of status[].", many=True, enum=[s for s, _ in SubscriptionStatus.choices],
               deprecated=True),
)


def get_link_or_404(service: Service, external_id: str) -> AccountLink:
    link = identity_selectors.get_link(service=service, external_id=external_id)
    if link is None:
        raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
    return link


def requested_statuses(query: Query) -> list[str]:
    """``status[]`` (or its alias ``status``) as declared by ``SUBSCRIPTION_STATUSES``."""
    statuses = query.list_of("status[]", "status")
    valid = set(selectors.SUBSCRIPTION_STATUSES)
    if any(status not in valid for status in statuses):
        raise ValidationFailed({"status": [ErrorCode.VALUE_IS_INVALID]})
    return statuses or [SubscriptionStatus.ACTIVE]


class CustomerDetailView(ServiceAPIView):
    @extend_schema(operation_id="customers_retrieve", parameters=[EXTERNAL_ID],
                   responses={200: envelope("customer", ref("Customer")), **ERRORS})
    def get(self, request: Request, external_id: str) -> Response:
        return Response({"customer": render_customer(get_link_or_404(self.service, external_id))})

    @extend_schema(operation_id="customers_destroy", parameters=[EXTERNAL_ID],
                   responses={200: envelope("customer", ref("Customer")), **ERRORS},
                   description="Soft delete: terminates the customer's subscriptions in this service.")
    def delete(self, request: Request, external_id: str) -> Response:
        link = lifecycle.delete_customer(link=get_link_or_404(self.service, external_id))
        return Response({"customer": render_customer(link)})


class CustomerSubscriptionsView(ServiceAPIView):
    @documented(operation_id="customers_subscriptions_list", parameters=[EXTERNAL_ID],
                query=(*PAGINATION, *SUBSCRIPTION_STATUSES), responses={200: page("subscriptions", SUBSCRIPTION), **ERRORS})
    def get(self, request: Request, external_id: str) -> Response:
        query = self.query(request)
        link = get_link_or_404(self.service, external_id)
        subscriptions = selectors.list_subscriptions(
            service=self.service, statuses=requested_statuses(query), link=link)
        items, meta = paginate(query, subscriptions)
        return Response({"subscriptions": [render_subscription(s) for s in items], "meta": meta})


class CustomerCurrentUsageView(ServiceAPIView):
    @documented(
        operation_id="customers_current_usage",
        parameters=[EXTERNAL_ID],
        query=[QueryParam("external_subscription_id", "The subscription's id in the calling app.", required=True),
               QueryParam("apply_taxes", "Add Odoo's taxes of the customer (default true, as Lago).",
                          OpenApiTypes.BOOL),
               QueryParam("billable_metric_code", "Only the charge(s) of this metric."),
               QueryParam("charge_code", "Alias of billable_metric_code.")],
        responses={200: envelope("customer_usage", CUSTOMER_USAGE), **ERRORS, 405: LAGO_OBJECT},
        description="Usage of the open billing window, computed live (405 no_active_subscription).",
    )
    def get(self, request: Request, external_id: str) -> Response:
        query = self.query(request)
        subscription = _active_subscription(self.service, external_id, query)
        assert subscription.current_period_start is not None and subscription.current_period_end is not None
        usage = compute_usage(subscription=subscription, window_start=subscription.current_period_start,
                              window_end=subscription.current_period_end)
        only = query.first_of("billable_metric_code", "charge_code")
        charges = [c for c in usage.charges if not only or c.charge.metric.code == only]
        amount_cents = sum(c.amount_cents for c in charges)
        apply_taxes = query.get("apply_taxes")
        if apply_taxes not in (None, "", "true", "false"):
            raise ValidationFailed({"apply_taxes": [ErrorCode.VALUE_IS_INVALID]})
        taxes_cents = 0 if apply_taxes == "false" else selectors.usage_taxes_cents(
            subscription=subscription, charges=charges, currency=usage.currency)
        return Response({"customer_usage": {
            "from_datetime": iso_seconds(usage.window_start),
            "to_datetime": iso_seconds(usage.window_end),
            "issuing_date": usage.window_end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": usage.currency,
            "amount_cents": amount_cents,
            "taxes_amount_cents": taxes_cents,
            "total_amount_cents": amount_cents + taxes_cents,
            "precise_amount": format(quantize_amount(sum((c.amount for c in charges), Decimal(0))), "f"),
            "charges_usage": [render_charge_usage(c, usage.currency) for c in charges],
        }})


class CustomerProjectedUsageView(ServiceAPIView):
    @documented(
        operation_id="customers_projected_usage",
        parameters=[EXTERNAL_ID],
        query=[QueryParam("external_subscription_id", "The subscription's id in the calling app.", required=True),
               QueryParam("apply_taxes", "Accepted for compatibility; taxes are computed by Odoo.",
                          OpenApiTypes.BOOL),
               QueryParam("billable_metric_code", "Only the charge(s) of this metric."),
               QueryParam("charge_code", "Alias of billable_metric_code.")],
        responses={200: envelope("customer_projected_usage", PROJECTED_USAGE), **ERRORS, 405: LAGO_OBJECT},
        description="The open window's usage so far and projected linearly to its end, as Lago: each charge's "
                    "units divided by the share of the window's days passed (today included), priced by the "
                    "charge's terms (405 no_active_subscription).",
    )
    def get(self, request: Request, external_id: str) -> Response:
        query = self.query(request)
        subscription = _active_subscription(self.service, external_id, query)
        assert subscription.current_period_start is not None and subscription.current_period_end is not None
        projection = compute_projected_usage(
            subscription=subscription, window_start=subscription.current_period_start,
            window_end=subscription.current_period_end, now=timezone.now())
        usage = projection.usage
        only = query.first_of("billable_metric_code", "charge_code")
        charges = [c for c in projection.charges if not only or c.usage.charge.metric.code == only]
        amount_cents = sum(c.usage.amount_cents for c in charges)
        projected_cents = sum(cents(c.projected_amount, usage.currency) for c in charges)
        return Response({"customer_projected_usage": {
            "from_datetime": iso_seconds(usage.window_start),
            "to_datetime": iso_seconds(usage.window_end),
            "issuing_date": usage.window_end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": usage.currency,
            "amount_cents": amount_cents,
            "projected_amount_cents": projected_cents,
            "taxes_amount_cents": 0,
            "total_amount_cents": amount_cents,
            "precise_amount": format(quantize_amount(sum((c.usage.amount for c in charges), Decimal(0))), "f"),
            "projected_precise_amount": format(
                quantize_amount(sum((c.projected_amount for c in charges), Decimal(0))), "f"),
            "charges_usage": [{
                **render_charge_usage(c.usage, usage.currency),
                "projected_units": canonical_decimal(c.projected_units),
                "projected_amount_cents": cents(c.projected_amount, usage.currency),
                "projected_precise_amount": format(c.projected_amount, "f"),
                "groups": [],
                "projected_presentation_breakdowns": [],
            } for c in charges],
        }})


def _active_subscription(service: Service, external_id: str, query: Query) -> Subscription:
    """The customer's active subscription ``external_subscription_id`` with an open window,
    else 405 ``no_active_subscription`` (Lago's answer for current and projected usage)."""
    link = get_link_or_404(service, external_id)
    subscription = selectors.list_subscriptions(
        service=service, statuses=[SubscriptionStatus.ACTIVE], link=link,
    ).filter(external_id=query.get("external_subscription_id") or "").first()
    if (subscription is None or subscription.current_period_start is None
            or subscription.current_period_end is None):
        raise NotAllowed(ErrorCode.NO_ACTIVE_SUBSCRIPTION)
    return subscription


class CustomerPastUsageView(ServiceAPIView):
    @documented(
        operation_id="customers_past_usage",
        parameters=[EXTERNAL_ID],
        query=[QueryParam("external_subscription_id", "The subscription's id in the calling app.", required=True),
               QueryParam("billable_metric_code", "Only the charge(s) of this metric."),
               QueryParam("periods_count", "How many of the latest closed periods.", OpenApiTypes.INT),
               *PAGINATION],
        responses={200: page("usage_periods", CUSTOMER_USAGE), **ERRORS},
        description="Usage of the subscription's closed windows (newest first), as rated and invoiced.",
    )
    def get(self, request: Request, external_id: str) -> Response:
        query = self.query(request)
        link = get_link_or_404(self.service, external_id)
        subscription = (selectors.subscriptions(service=self.service)
                        .filter(account_link=link, external_id=query.get("external_subscription_id") or "")
                        .order_by("-created_at").first())
        if subscription is None:
            raise NotFound(ErrorCode.SUBSCRIPTION_NOT_FOUND)
        periods_count = _periods_count(query.get("periods_count"))
        periods = selectors.past_usage_periods(subscription=subscription,
                                               metric_code=query.get("billable_metric_code") or None)
        if periods_count is not None:
            periods = periods[:periods_count]
        items, meta = paginate(query, periods)
        return Response({"usage_periods": [render_usage_period(p) for p in items], "meta": meta})


def _periods_count(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed({"periods_count": [ErrorCode.VALUE_IS_INVALID]})
    return int(raw)


def render_usage_period(period: selectors.UsagePeriod) -> dict[str, Any]:
    amount_cents = sum(c.amount_cents for c in period.charges)
    return {
        "from_datetime": iso_seconds(period.window_start),
        "to_datetime": iso_seconds(period.window_end),
        "issuing_date": period.window_end.date().isoformat(),
        "lago_invoice_id": None,  # the invoice is Odoo's: GET /invoices lists it
        "currency": period.currency,
        "amount_cents": amount_cents,
        "taxes_amount_cents": 0,
        "total_amount_cents": amount_cents,
        "precise_amount": format(quantize_amount(sum((c.amount for c in period.charges), Decimal(0))), "f"),
        "charges_usage": [render_charge_usage(c, period.currency) for c in period.charges],
    }


def render_charge_usage(charge_usage: ChargeUsage, currency: str) -> dict[str, Any]:
    charge = charge_usage.charge
    metric = charge.metric
    return {
        "units": canonical_decimal(charge_usage.units),
        "total_aggregated_units": canonical_decimal(charge_usage.units),
        "billable_units": canonical_decimal(charge_usage.billable_units),
        "events_count": charge_usage.events_count,
        "amount_cents": charge_usage.amount_cents,
        "precise_amount": format(charge_usage.amount, "f"),
        "amount_currency": currency,
        "pricing_unit_details": None,
        "charge": {"lago_id": str(charge.id), "code": metric.code, "charge_model": charge.charge_model,
                   "invoice_display_name": charge.invoice_display_name or None},
        "billable_metric": {"lago_id": str(metric.id), "name": metric.name, "code": metric.code,
                            "aggregation_type": metric.aggregation_type},
        "filters": [],
        "grouped_usage": [],
        "presentation_breakdowns": [],
    }
