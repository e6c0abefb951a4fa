"""``/customers``: upsert, read, list, soft delete, nested subscriptions, current usage."""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework.response import Response

from billing_project.api.errors import MethodNotAllowed, NotFound, ValidationFailed
from billing_project.api.pagination import paginate
from billing_project.api.parsing import require_root
from billing_project.api.views import ServiceAPIView
from identity import selectors, services
from identity.api.formatting import iso_seconds
from identity.api.inputs import CustomerInput
from identity.api.renderers import render_customer
from metering import selectors as metering_selectors
from metering import services as metering_services
from metering.api.renderers import render_subscription
from metering.models import SubscriptionStatus
from metering.api.event_schema import canonical_decimal
from metering.pricing import quantize_amount

EXTERNAL_ID = OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                               description="The customer's id in the calling app.")
PAGE = OpenApiParameter("page", OpenApiTypes.INT, description="Page number, from 1.")
PER_PAGE = OpenApiParameter("per_page", OpenApiTypes.INT, description="Items per page (default 100, max 1000).")
LAGO_OBJECT = OpenApiResponse(OpenApiTypes.OBJECT, description="Lago-shaped JSON (see docs/api.md).")
ERRORS = {400: LAGO_OBJECT, 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT}


def customer_body(name="CustomerBody"):
    return inline_serializer(name, {"customer": CustomerInput()})


def get_link_or_404(service, external_id):
    link = selectors.get_link(service=service, external_id=external_id)
    if link is None:
        raise NotFound("customer_not_found")
    return link


class CustomerListView(ServiceAPIView):
    @extend_schema(operation_id="customers_upsert", request=customer_body(),
                   responses={200: LAGO_OBJECT, **ERRORS},
                   description="Create or update (by external_id) the calling service's customer.")
    def post(self, request):
        payload = CustomerInput(data=require_root(request, "customer"))
        payload.is_valid(raise_exception=True)
        result = services.upsert_customer(service=self.service, data=payload.validated_data)
        return Response({"customer": render_customer(result.link)})

    @extend_schema(
        operation_id="customers_list",
        parameters=[PAGE, PER_PAGE,
                    OpenApiParameter("external_id", OpenApiTypes.STR, description="Exact external id."),
                    OpenApiParameter("search_term", OpenApiTypes.STR,
                                     description="Substring of external id, name or email."),
                    OpenApiParameter("currencies[]", OpenApiTypes.STR, many=True, description="Currency codes."),
                    OpenApiParameter("countries[]", OpenApiTypes.STR, many=True, description="Country codes.")],
        responses={200: LAGO_OBJECT, 401: LAGO_OBJECT, 422: LAGO_OBJECT},
    )
    def get(self, request):
        params = request.query_params
        links = selectors.list_links(
            service=self.service, external_id=params.get("external_id"), search_term=params.get("search_term"),
            currencies=params.getlist("currencies[]") or params.getlist("currencies"),
            countries=params.getlist("countries[]") or params.getlist("countries"),
        )
        items, meta = paginate(request, links)
        return Response({"customers": [render_customer(link) for link in items], "meta": meta})


class CustomerDetailView(ServiceAPIView):
    @extend_schema(operation_id="customers_retrieve", parameters=[EXTERNAL_ID],
                   responses={200: LAGO_OBJECT, **ERRORS})
    def get(self, request, external_id):
        return Response({"customer": render_customer(get_link_or_404(self.service, external_id))})

    @extend_schema(operation_id="customers_destroy", parameters=[EXTERNAL_ID],
                   responses={200: LAGO_OBJECT, **ERRORS},
                   description="Soft delete: terminates the customer's subscriptions in this service.")
    def delete(self, request, external_id):
        link = get_link_or_404(self.service, external_id)
        # One transaction: a failure after the subscriptions ended must not leave a
        # customer without subscriptions who still looks active (or the reverse).
        with transaction.atomic():
            metering_services.terminate_customer_subscriptions(link=link)
            customer = services.delete_customer(link=link)
        return Response({"customer": render_customer(customer)})


SUBSCRIPTION_STATUS = OpenApiParameter(
    "status[]", OpenApiTypes.STR, many=True, enum=[s for s, _ in SubscriptionStatus.choices],
    description="Statuses to include (default: active).")


def requested_statuses(request) -> list[str]:
    statuses = request.query_params.getlist("status[]") or request.query_params.getlist("status")
    valid = set(metering_selectors.SUBSCRIPTION_STATUSES)
    if any(status not in valid for status in statuses):
        raise ValidationFailed({"status": ["value_is_invalid"]})
    return statuses or [SubscriptionStatus.ACTIVE]


class CustomerSubscriptionsView(ServiceAPIView):
    @extend_schema(operation_id="customers_subscriptions_list",
                   parameters=[EXTERNAL_ID, PAGE, PER_PAGE, SUBSCRIPTION_STATUS],
                   responses={200: LAGO_OBJECT, **ERRORS})
    def get(self, request, external_id):
        link = get_link_or_404(self.service, external_id)
        subscriptions = metering_selectors.list_subscriptions(
            service=self.service, statuses=requested_statuses(request), link=link)
        items, meta = paginate(request, subscriptions)
        return Response({"subscriptions": [render_subscription(s) for s in items], "meta": meta})


class CustomerCurrentUsageView(ServiceAPIView):
    @extend_schema(
        operation_id="customers_current_usage",
        parameters=[EXTERNAL_ID,
                    OpenApiParameter("external_subscription_id", OpenApiTypes.STR, required=True,
                                     description="The subscription's id in the calling app."),
                    OpenApiParameter("apply_taxes", OpenApiTypes.BOOL,
                                     description="Accepted for compatibility; taxes are computed by Odoo."),
                    OpenApiParameter("billable_metric_code", OpenApiTypes.STR,
                                     description="Only the charge(s) of this metric."),
                    OpenApiParameter("charge_code", OpenApiTypes.STR, description="Alias of billable_metric_code.")],
        responses={200: LAGO_OBJECT, **ERRORS, 405: LAGO_OBJECT},
        description="Usage of the open billing window, computed live (405 no_active_subscription).",
    )
    def get(self, request, external_id):
        from metering.rating import compute_usage

        link = get_link_or_404(self.service, external_id)
        subscription = metering_selectors.list_subscriptions(
            service=self.service, statuses=[SubscriptionStatus.ACTIVE], link=link,
        ).filter(external_id=request.query_params.get("external_subscription_id") or "").first()
        if subscription is None or subscription.current_period_start is None:
            raise MethodNotAllowed("no_active_subscription")
        usage = compute_usage(subscription=subscription, window_start=subscription.current_period_start,
                              window_end=subscription.current_period_end)
        only = request.query_params.get("billable_metric_code") or request.query_params.get("charge_code")
        charges = [c for c in usage.charges if not only or c.charge.metric.code == only]
        amount_cents = sum(c.amount_cents for c in charges)
        return Response({"customer_usage": {
            "from_datetime": iso_seconds(usage.window_start),
            "to_datetime": iso_seconds(usage.window_end),
            "issuing_date": usage.window_end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": usage.currency,
            "amount_cents": amount_cents,
            "taxes_amount_cents": 0,
            "total_amount_cents": amount_cents,
            "precise_amount": format(quantize_amount(sum((c.amount for c in charges), Decimal(0))), "f"),
            "charges_usage": [render_charge_usage(c, usage.currency) for c in charges],
        }})


def render_charge_usage(charge_usage, currency: str) -> dict:
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

