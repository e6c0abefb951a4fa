"""``/api/v1/invoices`` and ``/api/v1/customers/{external_id}/invoices``: thin, scoped to the calling service."""

from __future__ import annotations

from typing import Any, Iterable

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import LAGO_JSON
from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, Query, QueryParam, documented
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from identity import selectors as identity_selectors
from odoo_bridge import selectors
from odoo_bridge.models import Invoice, InvoicePaymentStatus, InvoiceStatus
from odoo_bridge.renderers import render_invoice
from .schemas import INVOICE


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


FILTER_QUERY = (
    QueryParam("status", "Invoice status.", enum=InvoiceStatus.values),
    QueryParam("payment_status", "Payment status.", enum=InvoicePaymentStatus.values),
    QueryParam("invoice_type", "`subscription` or `credit_note`."),
    QueryParam("currency", "ISO 4217 currency code."),
    QueryParam("issuing_date_from", "Issued on or after this day.", OpenApiTypes.DATE),
    QueryParam("issuing_date_to", "Issued on or before this day.", OpenApiTypes.DATE),
    QueryParam("payment_overdue", "Finalized, unpaid and past due.", OpenApiTypes.BOOL),
    QueryParam("search_term", "Part of the number, customer name or email."),
    *PAGINATION,
)
EXTERNAL_CUSTOMER = QueryParam("external_customer_id", "The customer's id in the calling app.")


def _filters(query: Query, names: Iterable[str]) -> dict[str, Any]:
    form = InvoiceFilters(data={name: query.get(name) for name in names if query.get(name) is not None})
    if not form.is_valid():
        raise ValidationFailed({key: [ErrorCode.VALUE_IS_INVALID] for key in form.errors})
    return {k: v for k, v in form.validated_data.items() if v is not None and v != ""}


def _list_response(query: Query, queryset: QuerySet[Invoice]) -> Response:
    items, meta = paginate(query, queryset)
    return Response({"invoices": [render_invoice(invoice) for invoice in items], "meta": meta})


class InvoiceListView(ServiceAPIView):
    @documented(operation_id="invoices_list", query=(EXTERNAL_CUSTOMER, *FILTER_QUERY),
                responses={200: page("invoices", INVOICE), 401: LAGO_JSON, 422: LAGO_JSON},
                description="Invoices of the calling service, mirrored from Odoo.")
    def get(self, request: Request) -> Response:
        query = self.query(request)
        filters = _filters(query, [EXTERNAL_CUSTOMER.name, *(p.name for p in FILTER_QUERY)])
        external_customer_id = filters.pop("external_customer_id", None)
        queryset = selectors.invoices_for_service(service=self.service)
        if external_customer_id is not None:
            link = identity_selectors.get_link(service=self.service, external_id=external_customer_id)
            if link is None:
                return Response({"invoices": [], "meta": paginate(query, queryset.none())[1]})
            filters["account_link_id"] = link.id
        return _list_response(query, selectors.filter_invoices(queryset, **filters))


class InvoiceDetailView(ServiceAPIView):
    @extend_schema(operation_id="invoices_retrieve",
                   parameters=[OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The invoice's lago_id (UUID).")],
                   responses={200: envelope("invoice", INVOICE), 401: LAGO_JSON, 404: LAGO_JSON})
    def get(self, request: Request, lago_id: str) -> Response:
        invoice = selectors.invoice_by_lago_id(service=self.service, lago_id=lago_id)
        if invoice is None:
            raise NotFound(ErrorCode.INVOICE_NOT_FOUND)
        return Response({"invoice": render_invoice(invoice)})


class CustomerInvoiceListView(ServiceAPIView):
    @documented(operation_id="customers_invoices_list",
                parameters=[OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                             description="The customer's id in the calling app.")],
                query=FILTER_QUERY,
                responses={200: page("invoices", INVOICE), 401: LAGO_JSON, 404: LAGO_JSON, 422: LAGO_JSON})
    def get(self, request: Request, external_id: str) -> Response:
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        query = self.query(request)
        filters = _filters(query, [p.name for p in FILTER_QUERY])
        filters["account_link_id"] = link.id
        queryset = selectors.invoices_for_service(service=self.service)
        return _list_response(query, selectors.filter_invoices(queryset, **filters))
