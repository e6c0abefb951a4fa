"""``/api/v1/invoices`` and ``/api/v1/customers/{external_id}/invoices``: thin, scoped to the calling service."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing_project.api.errors import NotFound, ValidationFailed
from billing_project.api.pagination import paginate
from billing_project.api.views import ServiceAPIView
from identity import selectors as identity_selectors

from .. import selectors
from ..models import InvoicePaymentStatus, InvoiceStatus
from .renderers import render_invoice


class InvoiceFilters(serializers.Serializer):
    """Lago's list filters; unknown query parameters are ignored, as Lago does."""

    external_customer_id = serializers.CharField(required=False, max_length=255)
    status = serializers.ChoiceField(choices=InvoiceStatus.values, required=False)
    payment_status = serializers.ChoiceField(choices=InvoicePaymentStatus.values, required=False)
    invoice_type = serializers.ChoiceField(choices=["subscription", "credit_note", "add_on", "credit", "one_off",
                                                    "advance_charges", "progressive_billing"], required=False)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False)
    issuing_date_from = serializers.DateField(required=False)
    issuing_date_to = serializers.DateField(required=False)
    payment_overdue = serializers.BooleanField(required=False, allow_null=True, default=None)
    search_term = serializers.CharField(required=False, max_length=255)


LAGO_JSON = OpenApiResponse(OpenApiTypes.OBJECT, description="Lago-shaped JSON (see docs/odoo.md).")
PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="Page number, from 1."),
    OpenApiParameter("per_page", OpenApiTypes.INT, description="Items per page."),
]
FILTER_PARAMETERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=InvoiceStatus.values, description="Invoice status."),
    OpenApiParameter("payment_status", OpenApiTypes.STR, enum=InvoicePaymentStatus.values,
                     description="Payment status."),
    OpenApiParameter("invoice_type", OpenApiTypes.STR, description="`subscription` or `credit_note`."),
    OpenApiParameter("currency", OpenApiTypes.STR, description="ISO 4217 currency code."),
    OpenApiParameter("issuing_date_from", OpenApiTypes.DATE, description="Issued on or after this day."),
    OpenApiParameter("issuing_date_to", OpenApiTypes.DATE, description="Issued on or before this day."),
    OpenApiParameter("payment_overdue", OpenApiTypes.BOOL, description="Finalized, unpaid and past due."),
    OpenApiParameter("search_term", OpenApiTypes.STR, description="Part of the number, customer name or email."),
    *PAGE_PARAMETERS,
]
EXTERNAL_CUSTOMER = OpenApiParameter("external_customer_id", OpenApiTypes.STR,
                                     description="The customer's id in the calling app.")


def _filters(request) -> dict:
    form = InvoiceFilters(data=request.query_params)
    if not form.is_valid():
        raise ValidationFailed({key: ["value_is_invalid"] for key in form.errors})
    return {k: v for k, v in form.validated_data.items() if v is not None and v != ""}


def _list_response(request, queryset) -> Response:
    items, meta = paginate(request, queryset)
    return Response({"invoices": [render_invoice(invoice) for invoice in items], "meta": meta})


class InvoiceListView(ServiceAPIView):
    @extend_schema(operation_id="invoices_list", parameters=[EXTERNAL_CUSTOMER, *FILTER_PARAMETERS],
                   responses={200: LAGO_JSON, 401: LAGO_JSON, 422: LAGO_JSON},
                   description="Invoices of the calling service, mirrored from Odoo.")
    def get(self, request) -> Response:
        filters = _filters(request)
        external_customer_id = filters.pop("external_customer_id", None)
        queryset = selectors.invoices_for_service(service=self.service)
        if external_customer_id is not None:
            link = identity_selectors.get_link(service=self.service, external_id=external_customer_id)
            if link is None:
                return Response({"invoices": [], "meta": paginate(request, queryset.none())[1]})
            filters["customer_id"] = link.customer_id
        return _list_response(request, selectors.filter_invoices(queryset, **filters))


class InvoiceDetailView(ServiceAPIView):
    @extend_schema(operation_id="invoices_retrieve",
                   parameters=[OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The invoice's lago_id (UUID).")],
                   responses={200: LAGO_JSON, 401: LAGO_JSON, 404: LAGO_JSON})
    def get(self, request, lago_id: str) -> Response:
        invoice = selectors.invoice_by_lago_id(service=self.service, lago_id=lago_id)
        if invoice is None:
            raise NotFound("invoice_not_found")
        return Response({"invoice": render_invoice(invoice)})


class CustomerInvoiceListView(ServiceAPIView):
    @extend_schema(operation_id="customers_invoices_list",
                   parameters=[OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The customer's id in the calling app."),
                               *FILTER_PARAMETERS],
                   responses={200: LAGO_JSON, 401: LAGO_JSON, 404: LAGO_JSON, 422: LAGO_JSON})
    def get(self, request, external_id: str) -> Response:
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound("customer_not_found")
        filters = _filters(request)
        filters.pop("external_customer_id", None)
        filters["customer_id"] = link.customer_id
        queryset = selectors.invoices_for_service(service=self.service)
        return _list_response(request, selectors.filter_invoices(queryset, **filters))
