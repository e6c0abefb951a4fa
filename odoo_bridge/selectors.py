"""Reads of the invoice mirror, always scoped to one service."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Prefetch, Q, QuerySet

from identity.models import Service
from metering.models import Charge

from .models import Invoice, InvoiceLine, InvoicePaymentStatus, InvoiceStatus

INVOICE_TYPE_TO_MOVE = {"subscription": "out_invoice", "credit_note": "out_refund"}


def render_prefetches() -> list[Prefetch]:
    """What `render_invoice` reads beyond the invoice row: its fees, and the plan the subscription embeds."""
    return [
        Prefetch("lines", queryset=InvoiceLine.objects.select_related("charge__metric", "rated_usage",
                                                                       "subscription__plan")),
        Prefetch("subscription__plan__charges", queryset=Charge.objects.select_related("metric")
                 .prefetch_related("tiers").order_by("created_at", "id")),
    ]


def invoices_for_service(*, service: Service) -> QuerySet[Invoice]:
    return (Invoice.objects.filter(service=service)
            .select_related("service", "customer", "subscription__plan", "subscription__account_link__customer")
            .prefetch_related(*render_prefetches())
            .order_by("-issuing_date", "-created_at", "-odoo_move_id"))


def invoice_by_lago_id(*, service: Service, lago_id: str) -> Invoice | None:
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return invoices_for_service(service=service).filter(pk=key).first()


def filter_invoices(queryset: QuerySet[Invoice], *, customer_id: uuid.UUID | None = None, status: str | None = None,
                    payment_status: str | None = None,
                    invoice_type: str | None = None, currency: str | None = None,
                    issuing_date_from: dt.date | None = None, issuing_date_to: dt.date | None = None,
                    payment_overdue: bool | None = None, search_term: str | None = None,
                    today: dt.date | None = None) -> QuerySet[Invoice]:
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if status:
        queryset = queryset.filter(status=status)
    if payment_status:
        queryset = queryset.filter(payment_status=payment_status)
    if invoice_type:
        queryset = queryset.filter(odoo_move_type=INVOICE_TYPE_TO_MOVE.get(invoice_type, "-"))
    if currency:
        queryset = queryset.filter(currency=currency.upper())
    if issuing_date_from:
        queryset = queryset.filter(issuing_date__gte=issuing_date_from)
    if issuing_date_to:
        queryset = queryset.filter(issuing_date__lte=issuing_date_to)
    if payment_overdue is not None:
        today = today or dt.datetime.now(dt.timezone.utc).date()
        overdue = Q(status=InvoiceStatus.FINALIZED, payment_status=InvoicePaymentStatus.PENDING,
                    payment_due_date__lt=today)
        queryset = queryset.filter(overdue) if payment_overdue else queryset.exclude(overdue)
    if search_term:
        queryset = queryset.filter(Q(number__icontains=search_term) | Q(customer__name__icontains=search_term)
                                   | Q(customer__email__icontains=search_term))
    return queryset
