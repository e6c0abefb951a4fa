"""``/api/v1/invoices`` and ``/api/v1/customers/{external_id}/invoices``: thin, scoped to the calling service."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import LAGO_JSON
from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, Query, QueryParam, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from identity import selectors as identity_selectors
from odoo_bridge import credit_notes, invoice_actions, selectors
from odoo_bridge import one_off as one_off_invoices
from odoo_bridge.models import CreditNote, CreditNoteReason, Invoice, InvoicePaymentStatus, InvoiceStatus
from odoo_bridge.renderers import (render_credit_note, render_estimate, render_invoice, render_pending_credit_note,
                                   render_pending_one_off)
from .schemas import CREDIT_NOTE, CREDIT_NOTE_ESTIMATE, CUSTOMER_PORTAL_URL, INVOICE, INVOICE_PAYMENT_DETAILS


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
            pending = selectors.pending_one_off(service=self.service, lago_id=lago_id)
            if pending is not None:
                return Response({"invoice": render_pending_one_off(pending)})
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


class OneOffFeeInput(serializers.Serializer):
    """A fee of Lago's one-off invoice input (``InvoiceFee`` of the client). Taxes are Odoo's."""

    add_on_code = serializers.CharField(max_length=255)
    units = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=Decimal("0.0000000001"),
                                     required=False, allow_null=True)
    unit_amount_cents = serializers.IntegerField(min_value=0, max_value=10**15, required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    invoice_display_name = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                 allow_blank=True)
    from_datetime = serializers.DateTimeField(required=False, allow_null=True)
    to_datetime = serializers.DateTimeField(required=False, allow_null=True)
    tax_codes = serializers.JSONField(required=False, allow_null=True)

    def validate_tax_codes(self, value: Any) -> Any:
        if value:
            raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
        return value


class OneOffInvoiceInput(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    fees = serializers.ListField(child=OneOffFeeInput(), min_length=1)
    # Lago options not built: refused when set (the invoice is Odoo's, paid through Odoo's own flow).
    payment_method = serializers.JSONField(required=False, allow_null=True)
    invoice_custom_section = serializers.JSONField(required=False, allow_null=True)
    billing_entity_code = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    purchase_order_number = serializers.CharField(required=False, allow_null=True, allow_blank=True)

    def _refuse(self, value: Any) -> Any:
        if value:
            raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
        return value

    validate_payment_method = validate_invoice_custom_section = validate_purchase_order_number = _refuse


class InvoiceCreateView(InvoiceListView):
    """``POST /invoices`` (Lago's one-off invoice of add-ons) next to the list."""

    @extend_schema(operation_id="invoices_create",
                   request=inline_serializer("OneOffInvoiceBody", {"invoice": OneOffInvoiceInput()}),
                   responses={200: envelope("invoice", INVOICE), 400: LAGO_JSON, 401: LAGO_JSON, 404: LAGO_JSON,
                              422: LAGO_JSON},
                   description="A one-off invoice of add-ons, realised as a posted Odoo invoice by the next push "
                               "cycle; answered as a draft until Odoo's invoice is mirrored back (same lago_id).")
    def post(self, request: Request) -> Response:
        payload = OneOffInvoiceInput(data=require_root(request, "invoice"))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        billing_entity = data.get("billing_entity_code")
        if billing_entity and billing_entity != self.service.code:
            raise ValidationFailed({"billing_entity_code": [ErrorCode.NOT_SUPPORTED]})
        link = identity_selectors.get_link(service=self.service, external_id=data["external_customer_id"])
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        one_off = one_off_invoices.create_add_on_invoice(service=self.service, link=link,
                                                         currency=data.get("currency"), fees=data["fees"])
        found = selectors.pending_one_off(service=self.service, lago_id=str(one_off.pk))
        assert found is not None
        return Response({"invoice": render_pending_one_off(found)})


# ---------------------------------------------------------------- credit notes (Odoo refunds)
class CreditNoteFilters(serializers.Serializer):
    external_customer_id = serializers.CharField(required=False, max_length=255)
    issuing_date_from = serializers.DateField(required=False)
    issuing_date_to = serializers.DateField(required=False)
    search_term = serializers.CharField(required=False, max_length=255)
    invoice_number = serializers.CharField(required=False, max_length=64)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False)


CREDIT_NOTE_QUERY = (
    EXTERNAL_CUSTOMER,
    QueryParam("issuing_date_from", "Issued on or after this day.", OpenApiTypes.DATE),
    QueryParam("issuing_date_to", "Issued on or before this day.", OpenApiTypes.DATE),
    QueryParam("search_term", "Part of the number, customer name or email."),
    QueryParam("invoice_number", "The number of the invoice it credits."),
    QueryParam("currency", "ISO 4217 currency code."),
    *PAGINATION,
)


CENTS_LIMIT = 10**15


def _cents(**kwargs: Any) -> serializers.IntegerField:
    # negative amounts pass here and are refused as Lago refuses them (invalid_value), not as out of range
    return serializers.IntegerField(min_value=-CENTS_LIMIT, max_value=CENTS_LIMIT, **kwargs)


class CreditNoteItemInput(serializers.Serializer):
    fee_id = serializers.CharField(max_length=80)
    amount_cents = _cents()


class CreditNoteEstimateInput(serializers.Serializer):
    invoice_id = serializers.CharField(max_length=64)
    items = serializers.ListField(child=CreditNoteItemInput(), min_length=1, max_length=500)


class CreditNoteInput(CreditNoteEstimateInput):
    reason = serializers.ChoiceField(choices=CreditNoteReason.values, required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=2000)
    credit_amount_cents = _cents(required=False, allow_null=True)
    refund_amount_cents = _cents(required=False, allow_null=True)
    offset_amount_cents = _cents(required=False, allow_null=True)
    # Lago's credit note metadata is not built (the credit note is Odoo's): refused when set.
    metadata = serializers.JSONField(required=False, allow_null=True)

    def validate_metadata(self, value: Any) -> Any:
        if value:
            raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
        return value


def _credit_note_answer(service: Any, lago_id: str) -> dict[str, Any] | None:
    """The credit note as mirrored from Odoo, else as asked (Odoo has not posted it yet)."""
    note = selectors.credit_note_by_lago_id(service=service, lago_id=lago_id)
    if note is not None:
        return render_credit_note(note)
    pending = selectors.pending_credit_note(service=service, lago_id=lago_id)
    if pending is not None:
        return render_pending_credit_note(pending, selectors.invoice_lines_by_odoo_id(pending.invoice))
    return None


class CreditNoteListView(ServiceAPIView):
    @extend_schema(operation_id="credit_notes_create",
                   request=inline_serializer("CreditNoteBody", {"credit_note": CreditNoteInput()}),
                   responses={200: envelope("credit_note", CREDIT_NOTE), 400: LAGO_JSON, 401: LAGO_JSON,
                              404: LAGO_JSON, 405: LAGO_JSON, 422: LAGO_JSON},
                   description="A credit note of fees of a finalized invoice, realised in Odoo at once as a "
                               "posted out_refund that keeps no link to the order lines (nothing is rebilled); "
                               "answered as asked while Odoo cannot be reached (the push cycle posts it).")
    def post(self, request: Request) -> Response:
        payload = CreditNoteInput(data=require_root(request, "credit_note"))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        asked = credit_notes.create_credit_note(
            service=self.service, invoice_id=data["invoice_id"], items=data["items"],
            reason=data.get("reason") or CreditNoteReason.OTHER, description=data.get("description") or "",
            credit_amount_cents=data.get("credit_amount_cents") or 0,
            refund_amount_cents=data.get("refund_amount_cents") or 0,
            offset_amount_cents=data.get("offset_amount_cents") or 0)
        credit_notes.realise_now(asked)  # committed first: a lost answer is finished by the push cycle
        answer = _credit_note_answer(self.service, str(asked.pk))
        assert answer is not None
        return Response({"credit_note": answer})

    @documented(operation_id="credit_notes_list", query=CREDIT_NOTE_QUERY,
                responses={200: page("credit_notes", CREDIT_NOTE), 401: LAGO_JSON, 422: LAGO_JSON},
                description="Credit notes of the calling service: Odoo refunds (out_refund), mirrored.")
    def get(self, request: Request) -> Response:
        query = self.query(request)
        form = CreditNoteFilters(data={p.name: query.get(p.name) for p in CREDIT_NOTE_QUERY
                                       if query.get(p.name) is not None})
        if not form.is_valid():
            raise ValidationFailed({key: [ErrorCode.VALUE_IS_INVALID] for key in form.errors})
        filters = {k: v for k, v in form.validated_data.items() if v not in (None, "")}
        queryset = selectors.credit_notes_for_service(service=self.service)
        external_customer_id = filters.pop("external_customer_id", None)
        if external_customer_id is not None:
            link = identity_selectors.get_link(service=self.service, external_id=external_customer_id)
            if link is None:
                return Response({"credit_notes": [], "meta": paginate(query, queryset.none())[1]})
            filters["account_link_id"] = link.id
        items, meta = paginate(query, selectors.filter_credit_notes(queryset, **filters))
        return Response({"credit_notes": [render_credit_note(note) for note in items], "meta": meta})


class CreditNoteDetailView(ServiceAPIView):
    @extend_schema(operation_id="credit_notes_retrieve",
                   parameters=[OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The credit note's lago_id (UUID).")],
                   responses={200: envelope("credit_note", CREDIT_NOTE), 401: LAGO_JSON, 404: LAGO_JSON})
    def get(self, request: Request, lago_id: str) -> Response:
        answer = _credit_note_answer(self.service, lago_id)
        if answer is None:
            raise NotFound(ErrorCode.CREDIT_NOTE_NOT_FOUND)
        return Response({"credit_note": answer})


class CreditNoteEstimateView(ServiceAPIView):
    @extend_schema(operation_id="credit_notes_estimate",
                   request=inline_serializer("CreditNoteEstimateBody", {"credit_note": CreditNoteEstimateInput()}),
                   responses={200: CREDIT_NOTE_ESTIMATE, 400: LAGO_JSON, 401: LAGO_JSON, 404: LAGO_JSON,
                              405: LAGO_JSON, 422: LAGO_JSON},
                   description="What a credit note of these fees would be: amounts and the fees' Odoo taxes, "
                               "computed here; nothing is sent to Odoo.")
    def post(self, request: Request) -> Response:
        payload = CreditNoteEstimateInput(data=require_root(request, "credit_note"))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        invoice = credit_notes.creditable_invoice(service=self.service, invoice_id=data["invoice_id"])
        found = credit_notes.estimate(invoice=invoice, items=data["items"])
        return Response({"estimated_credit_note": render_estimate(found)})


class CreditNoteDownloadView(ServiceAPIView):
    @extend_schema(operation_id="credit_notes_download",
                   parameters=[OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The credit note's lago_id (UUID).")],
                   request=None,
                   responses={200: envelope("credit_note", CREDIT_NOTE), 401: LAGO_JSON, 404: LAGO_JSON,
                              503: LAGO_JSON},
                   description="The credit note with `file_url`: its PDF on Odoo's customer portal.")
    def post(self, request: Request, lago_id: str) -> Response:
        note = selectors.credit_note_by_lago_id(service=self.service, lago_id=lago_id)
        if note is None:
            raise NotFound(ErrorCode.CREDIT_NOTE_NOT_FOUND)
        invoice_actions.download_credit_note(note=note)
        fresh: CreditNote | None = selectors.credit_note_by_lago_id(service=self.service, lago_id=lago_id)
        assert fresh is not None
        return Response({"credit_note": render_credit_note(fresh)})


class CustomerCreditNoteListView(ServiceAPIView):
    @documented(operation_id="customers_credit_notes_list",
                parameters=[OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                             description="The customer's id in the calling app.")],
                query=tuple(p for p in CREDIT_NOTE_QUERY if p.name != EXTERNAL_CUSTOMER.name),
                responses={200: page("credit_notes", CREDIT_NOTE), 401: LAGO_JSON, 404: LAGO_JSON, 422: LAGO_JSON},
                description="Credit notes of one customer account of the calling service.")
    def get(self, request: Request, external_id: str) -> Response:
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        query = self.query(request)
        names = [p.name for p in CREDIT_NOTE_QUERY if p.name != EXTERNAL_CUSTOMER.name]
        form = CreditNoteFilters(data={name: query.get(name) for name in names if query.get(name) is not None})
        if not form.is_valid():
            raise ValidationFailed({key: [ErrorCode.VALUE_IS_INVALID] for key in form.errors})
        filters = {k: v for k, v in form.validated_data.items() if v not in (None, "")}
        filters["account_link_id"] = link.id
        queryset = selectors.filter_credit_notes(selectors.credit_notes_for_service(service=self.service), **filters)
        items, meta = paginate(query, queryset)
        return Response({"credit_notes": [render_credit_note(note) for note in items], "meta": meta})


# ---------------------------------------------------------------- invoice actions (realised in Odoo)
LAGO_ID = OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The invoice's lago_id.")
ERROR_RESPONSES = {401: LAGO_JSON, 404: LAGO_JSON, 405: LAGO_JSON, 503: LAGO_JSON}
ACTION_RESPONSES = {200: envelope("invoice", INVOICE), **ERROR_RESPONSES}


class _InvoiceActionView(ServiceAPIView):
    def invoice(self, lago_id: str) -> Invoice:
        invoice = selectors.invoice_by_lago_id(service=self.service, lago_id=lago_id)
        if invoice is None:
            raise NotFound(ErrorCode.INVOICE_NOT_FOUND)
        return invoice

    def answer(self, invoice: Invoice) -> Response:
        # re-read with what the renderer needs (an action may have changed the lines)
        fresh = selectors.invoice_by_lago_id(service=self.service, lago_id=str(invoice.pk))
        if fresh is None:  # Odoo now bills several services on it: held from every service
            raise NotFound(ErrorCode.INVOICE_NOT_FOUND)
        return Response({"invoice": render_invoice(fresh)})


class InvoiceDownloadView(_InvoiceActionView):
    @extend_schema(operation_id="invoices_download", parameters=[LAGO_ID], request=None, responses=ACTION_RESPONSES,
                   description="The invoice with `file_url`: its PDF on Odoo's customer portal (access token).")
    def post(self, request: Request, lago_id: str) -> Response:
        return self.answer(invoice_actions.download(invoice=self.invoice(lago_id)))


class InvoiceVoidView(_InvoiceActionView):
    @extend_schema(operation_id="invoices_void", parameters=[LAGO_ID], request=None, responses=ACTION_RESPONSES,
                   description="Cancel the invoice in Odoo (`button_cancel`): finalized and not paid only.")
    def post(self, request: Request, lago_id: str) -> Response:
        return self.answer(invoice_actions.void(invoice=self.invoice(lago_id)))


class InvoiceFinalizeView(_InvoiceActionView):
    @extend_schema(operation_id="invoices_finalize", parameters=[LAGO_ID], request=None, responses=ACTION_RESPONSES,
                   description="Post a draft invoice in Odoo (`action_post`); others are answered as they are.")
    def put(self, request: Request, lago_id: str) -> Response:
        return self.answer(invoice_actions.finalize(invoice=self.invoice(lago_id)))


class InvoiceRefreshView(_InvoiceActionView):
    @extend_schema(operation_id="invoices_refresh", parameters=[LAGO_ID], request=None, responses=ACTION_RESPONSES,
                   description="Mirror the invoice from Odoo now.")
    def put(self, request: Request, lago_id: str) -> Response:
        return self.answer(invoice_actions.refresh(invoice=self.invoice(lago_id)))


class InvoicePaymentUrlView(_InvoiceActionView):
    @extend_schema(operation_id="invoices_payment_url", parameters=[LAGO_ID], request=None,
                   responses={200: INVOICE_PAYMENT_DETAILS, **ERROR_RESPONSES, 422: LAGO_JSON},
                   description="The invoice's page on Odoo's customer portal, where it can be paid.")
    def post(self, request: Request, lago_id: str) -> Response:
        invoice = self.invoice(lago_id)
        url = invoice_actions.payment_url(invoice=invoice)
        link = invoice.account_link
        return Response({"invoice_payment_details": {
            "lago_customer_id": str(link.pk) if link else None,
            "lago_invoice_id": str(invoice.pk),
            "external_customer_id": link.external_id if link else None,
            "payment_provider": "odoo",
            "payment_url": url,
        }})


class CustomerPortalUrlView(ServiceAPIView):
    @extend_schema(operation_id="customers_portal_url",
                   parameters=[OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                description="The customer's id in the calling app.")],
                   responses={200: CUSTOMER_PORTAL_URL, 401: LAGO_JSON, 404: LAGO_JSON, 405: LAGO_JSON},
                   description="Odoo's customer portal (its invoices page); 405 when Odoo is not configured.")
    def get(self, request: Request, external_id: str) -> Response:
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        return Response({"customer": {"portal_url": invoice_actions.customer_portal_url(link=link)}})
