"""Reads of the invoice mirror, always scoped to one service."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from identity.models import Service
from metering.models import Charge, Subscription

from .models import (CreditNote, CreditNoteItem, CreditNoteRequest, CreditNoteStatus, Invoice, InvoiceLine,
                     InvoicePaymentStatus, InvoiceStatus, OneOffInvoice)

# Odoo refunds are credit notes (GET /credit_notes), never invoices: `invoice_type=credit_note` lists none.
INVOICE_TYPE_TO_MOVE = {"subscription": "out_invoice"}


def render_prefetches() -> list[Prefetch]:
    """What `render_invoice` reads beyond the invoice row: its fees, and the plan the subscription embeds."""
    return [
        Prefetch("lines", queryset=InvoiceLine.objects.select_related(
            "charge__metric", "rated_usage", "plan_fee", "subscription__plan__minimum_commitment",
            "one_off_line__add_on", "one_off_line__one_off", "coupon_discount__applied_coupon__coupon")),
        Prefetch("subscription__plan__charges", queryset=Charge.objects.select_related("metric")
                 .prefetch_related("tiers").order_by("created_at", "id")),
    ]


def credit_note_prefetches() -> list[Prefetch]:
    """What `render_credit_note` reads beyond the row: its items (fees) and its invoice."""
    return [Prefetch("items", queryset=CreditNoteItem.objects.select_related(
        "charge__metric", "rated_usage", "subscription__plan"))]


def credit_notes_for_service(*, service: Service) -> QuerySet[CreditNote]:
    """Posted (or voided) credit notes of the service; drafts and held ones are nobody's to read."""
    return (CreditNote.objects.filter(service=service, held_reason="").exclude(status=CreditNoteStatus.DRAFT)
            .select_related("service", "account_link", "invoice", "subscription__plan", "request")
            .prefetch_related(*credit_note_prefetches(), "account_link__metadata")
            .order_by("-issuing_date", "-created_at", "-odoo_move_id"))


def credit_note_by_lago_id(*, service: Service, lago_id: str) -> CreditNote | None:
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return credit_notes_for_service(service=service).filter(pk=key).first()


def filter_credit_notes(queryset: QuerySet[CreditNote], *, account_link_id: uuid.UUID | None = None,
                        issuing_date_from: dt.date | None = None, issuing_date_to: dt.date | None = None,
                        search_term: str | None = None, invoice_number: str | None = None,
                        currency: str | None = None) -> QuerySet[CreditNote]:
    if account_link_id is not None:
        queryset = queryset.filter(account_link_id=account_link_id)
    if issuing_date_from:
        queryset = queryset.filter(issuing_date__gte=issuing_date_from)
    if issuing_date_to:
        queryset = queryset.filter(issuing_date__lte=issuing_date_to)
    if invoice_number:
        queryset = queryset.filter(invoice__number=invoice_number)
    if currency:
        queryset = queryset.filter(currency=currency.upper())
    if search_term:
        queryset = queryset.filter(Q(number__icontains=search_term) | Q(account_link__name__icontains=search_term)
                                   | Q(account_link__external_email__icontains=search_term))
    return queryset


def invoices_for_service(*, service: Service) -> QuerySet[Invoice]:
    # a held invoice (lines of several service accounts) is nobody's to read: see Invoice.held_reason
    return (Invoice.objects.filter(service=service, held_reason="")
            .select_related("service", "account_link", "subscription__plan__minimum_commitment",
                            "subscription__account_link")
            .prefetch_related(*render_prefetches(), "account_link__metadata", "subscription__account_link__metadata")
            .order_by("-issuing_date", "-created_at", "-odoo_move_id"))


def invoice_by_lago_id(*, service: Service, lago_id: str) -> Invoice | None:
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return invoices_for_service(service=service).filter(pk=key).first()


def pending_one_off(*, service: Service, lago_id: str) -> OneOffInvoice | None:
    """A one-off invoice of the service that Odoo has not mirrored back yet (rendered as a draft)."""
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return (OneOffInvoice.objects.filter(service=service, pk=key, invoice__isnull=True)
            .select_related("service", "account_link").prefetch_related("lines__add_on", "account_link__metadata")
            .first())


def filter_invoices(queryset: QuerySet[Invoice], *, account_link_id: uuid.UUID | None = None,
                    status: str | None = None,
                    payment_status: str | None = None,
                    invoice_type: str | None = None, currency: str | None = None,
                    issuing_date_from: dt.date | None = None, issuing_date_to: dt.date | None = None,
                    payment_overdue: bool | None = None, search_term: str | None = None,
                    today: dt.date | None = None) -> QuerySet[Invoice]:
    if account_link_id is not None:
        queryset = queryset.filter(account_link_id=account_link_id)
    if status:
        queryset = queryset.filter(status=status)
    if payment_status:
        queryset = queryset.filter(payment_status=payment_status)
    if invoice_type in INVOICE_TYPE_TO_MOVE:
        queryset = queryset.filter(odoo_move_type=INVOICE_TYPE_TO_MOVE[invoice_type], invoice_type="")
    elif invoice_type:
        queryset = queryset.filter(invoice_type=invoice_type)
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
        queryset = queryset.filter(Q(number__icontains=search_term) | Q(account_link__name__icontains=search_term)
                                   | Q(account_link__external_email__icontains=search_term))
    return queryset


@dataclass(frozen=True)
class BilledTotals:
    """What a subscription was billed in Odoo, untaxed, net of credit notes (mirror amounts)."""

    untaxed: Decimal = Decimal(0)
    usage: Decimal = Decimal(0)  # lines of a charge's product (usage windows and their corrections)
    by_charge: dict[uuid.UUID | None, Decimal] = field(default_factory=dict)


def held_invoices() -> QuerySet[Invoice]:
    """Invoices held from every service (lines of several service accounts) that ops still has to split.

    Settled ones are left out: a cancelled or fully reversed invoice is voided, and the credit note that
    reversed a held invoice settles it rather than waiting for ops.
    """
    return Invoice.objects.exclude(held_reason="").exclude(status=InvoiceStatus.VOIDED).order_by("created_at")


def held_credit_notes() -> QuerySet[CreditNote]:
    """Held credit notes still to sort out: one that reversed a held invoice settles it (that invoice is
    voided), so only the others are listed."""
    settled_original = Invoice.objects.filter(odoo_move_id=OuterRef("reversed_move_id"), status=InvoiceStatus.VOIDED)
    return (CreditNote.objects.exclude(held_reason="").exclude(status=CreditNoteStatus.VOIDED)
            .exclude(Exists(settled_original)).order_by("created_at"))


def billed_totals(subscription: Subscription) -> BilledTotals:
    """Posted invoices minus posted credit notes ("minus refunds" of invariant 2).

    A fully reversed invoice is mirrored as voided: it still counts, and its credit note subtracts it
    (net 0); a cancelled invoice (voided without a credit note) never counted.
    """
    # by line: a held invoice bills several subscriptions, each line its own
    moves = list(Invoice.objects.filter(Q(subscription=subscription) | Q(lines__subscription=subscription))
                 .exclude(status=InvoiceStatus.DRAFT).distinct())
    notes = list(CreditNote.objects.filter(Q(subscription=subscription) | Q(items__subscription=subscription))
                 .filter(status=CreditNoteStatus.FINALIZED).distinct())
    refunded = {note.reversed_move_id for note in notes}
    signs = {m.pk: 1 for m in moves if m.status == InvoiceStatus.FINALIZED or m.odoo_move_id in refunded}
    untaxed = usage = Decimal(0)
    by_charge: dict[uuid.UUID | None, Decimal] = {}
    billed = [(signs[line.invoice_id], line.amount, line.charge_id) for line in InvoiceLine.objects.filter(
        invoice_id__in=list(signs), subscription=subscription)]
    billed += [(-1, item.amount, item.charge_id) for item in CreditNoteItem.objects.filter(
        credit_note__in=notes, subscription=subscription)]
    for sign, line_amount, charge_id in billed:
        amount = sign * line_amount
        untaxed += amount
        if charge_id is not None:
            usage += amount
        by_charge[charge_id] = by_charge.get(charge_id, Decimal(0)) + amount
    return BilledTotals(untaxed=untaxed, usage=usage, by_charge=by_charge)


def pending_credit_note(*, service: Service, lago_id: str) -> CreditNoteRequest | None:
    """A credit note of ``POST /credit_notes`` Odoo has not posted (or the pull not mirrored) yet."""
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return (CreditNoteRequest.objects.filter(service=service, pk=key, credit_note__isnull=True)
            .select_related("service", "account_link", "invoice").prefetch_related("items", "account_link__metadata")
            .first())


def invoice_lines_by_odoo_id(invoice: Invoice) -> dict[int, InvoiceLine]:
    return {line.odoo_line_id: line for line in invoice.lines.select_related(
        "charge__metric", "rated_usage", "plan_fee", "subscription__plan", "one_off_line__add_on",
        "one_off_line__one_off") if line.odoo_line_id}
