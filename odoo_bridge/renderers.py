"""Lago's invoice object (Lago API reference notes §4.7) from the Invoice mirror.

Amounts are integer cents; every field the Lago Python client requires is present.
Webhook payloads use this same function.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from billing_kit.formatting import iso_seconds, to_cents
from identity.renderers import render_customer
from identity.models import AccountLink
from metering.renderers import render_subscription

from .models import Invoice, InvoiceLine, InvoicePaymentStatus, InvoiceStatus

INVOICE_TYPES = {"out_invoice": "subscription", "out_refund": "credit_note"}


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _link(invoice: Invoice) -> AccountLink | None:
    """The service account the invoice bills: never looked up through the unified customer."""
    if invoice.account_link is not None:
        return invoice.account_link
    subscription = invoice.subscription
    return subscription.account_link if subscription is not None else None


def _tax_rate(line: InvoiceLine) -> Decimal:
    """The line's tax in percent of its amount (Lago's ``taxes_rate``), from Odoo's totals."""
    if not line.amount:
        return Decimal(0)
    return ((line.total_amount - line.amount) * 100 / line.amount).quantize(Decimal("0.01"))


def _render_fee(invoice: Invoice, line: InvoiceLine) -> dict[str, Any]:
    subscription = line.subscription or invoice.subscription
    usage = line.rated_usage
    charge = line.charge
    taxes = line.total_amount - line.amount
    item_type = "charge" if charge is not None else "subscription"
    item: dict[str, Any]
    if charge is not None:
        item = {"type": "charge", "code": charge.metric.code, "name": charge.metric.name,
                "invoice_display_name": charge.invoice_display_name or line.name, "lago_item_id": str(charge.pk),
                "item_type": "BillableMetric"}
    else:
        plan = subscription.plan if subscription else None
        item = {"type": item_type, "code": plan.code if plan else "", "name": plan.name if plan else line.name,
                "invoice_display_name": line.name, "lago_item_id": str(subscription.pk) if subscription else None,
                "item_type": "Subscription"}
    return {
        "lago_id": f"{invoice.pk}-{line.odoo_line_id or line.pk}",
        "lago_charge_id": str(charge.pk) if charge else None,
        "lago_invoice_id": str(invoice.pk),
        "lago_subscription_id": str(subscription.pk) if subscription else None,
        "external_subscription_id": subscription.external_id if subscription else None,
        "lago_customer_id": str(invoice.account_link_id) if invoice.account_link_id else None,
        "item": item,
        "pay_in_advance": False, "invoiceable": True,
        "amount_cents": to_cents(line.amount), "amount_currency": invoice.currency,
        "precise_amount": str(line.amount),
        "taxes_amount_cents": to_cents(taxes), "total_amount_cents": to_cents(line.total_amount),
        "total_amount_currency": invoice.currency,
        "taxes_rate": _tax_rate(line),  # a JSON number, as Lago
        "sub_total_excluding_taxes_amount_cents": to_cents(line.amount),
        "sub_total_excluding_taxes_precise_amount_cents": str(line.amount * 100),
        "units": str(line.quantity.normalize()), "total_aggregated_units": str(
            (usage.units if usage else line.quantity).normalize()),
        "precise_unit_amount": str(line.unit_amount.normalize()),
        "events_count": usage.events_count if usage else None,
        "payment_status": invoice.payment_status,
        "from_date": iso_seconds(usage.window_start) if usage else None,
        "to_date": iso_seconds(usage.window_end) if usage else None,
        "created_at": iso_seconds(invoice.created_at),
    }


def _billing_periods(invoice: Invoice, lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    subscription = invoice.subscription
    windows = sorted({(ln.rated_usage.window_start, ln.rated_usage.window_end) for ln in lines if ln.rated_usage})
    if subscription is None or not windows:
        return []
    start, end = windows[0][0], windows[-1][1]
    return [{"lago_subscription_id": str(subscription.pk), "external_subscription_id": subscription.external_id,
             "lago_plan_id": str(subscription.plan_id),
             "subscription_from_datetime": iso_seconds(start), "subscription_to_datetime": iso_seconds(end),
             "charges_from_datetime": iso_seconds(start), "charges_to_datetime": iso_seconds(end),
             "invoicing_reason": "subscription_periodic"}]


def render_invoice(invoice: Invoice) -> dict[str, Any]:
    """Prefetch `selectors.render_prefetches()` first: a page then costs a few queries, not a few per invoice."""
    lines = list(invoice.lines.all())
    total = to_cents(invoice.total_amount)
    due = to_cents(invoice.total_due_amount)
    paid = invoice.payment_status == InvoicePaymentStatus.SUCCEEDED
    net_payment_term = ((invoice.payment_due_date - invoice.issuing_date).days
                        if invoice.payment_due_date and invoice.issuing_date else 0)
    today = dt.datetime.now(dt.timezone.utc).date()
    overdue = bool(invoice.status == InvoiceStatus.FINALIZED and not paid and (
        (invoice.payment_due_date and invoice.payment_due_date < today)
        or invoice.payment_overdue_announced_at is not None))
    link = _link(invoice)
    return {
        "lago_id": str(invoice.pk),
        "billing_entity_code": invoice.service.code,
        "sequential_id": None,
        "number": invoice.number,
        "purchase_order_number": None,
        "issuing_date": _day(invoice.issuing_date),
        "payment_due_date": _day(invoice.payment_due_date),
        "net_payment_term": max(net_payment_term, 0),
        "invoice_type": INVOICE_TYPES.get(invoice.odoo_move_type, "subscription"),
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "payment_dispute_lost_at": None,
        "payment_overdue": overdue,
        "currency": invoice.currency,
        "fees_amount_cents": to_cents(invoice.fees_amount),
        "taxes_amount_cents": to_cents(invoice.taxes_amount),
        "progressive_billing_credit_amount_cents": 0,
        "coupons_amount_cents": 0,
        "credit_notes_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": to_cents(invoice.fees_amount),
        "sub_total_including_taxes_amount_cents": total,
        "total_amount_cents": total,
        "total_due_amount_cents": due,
        "total_paid_amount_cents": max(total - due, 0) if invoice.status != InvoiceStatus.VOIDED else 0,
        "total_offsetted_credit_note_amount_cents": 0,
        "prepaid_credit_amount_cents": 0,
        "prepaid_granted_credit_amount_cents": 0,
        "prepaid_purchased_credit_amount_cents": 0,
        "file_url": None, "xml_url": None, "web_url": None,
        "version_number": 4,
        "self_billed": False,
        "created_at": iso_seconds(invoice.created_at),
        "updated_at": iso_seconds(invoice.updated_at),
        "voided_at": iso_seconds(invoice.updated_at) if invoice.status == InvoiceStatus.VOIDED else None,
        "customer": render_customer(link) if link is not None else None,
        "subscriptions": [render_subscription(invoice.subscription)] if invoice.subscription else [],
        "billing_periods": _billing_periods(invoice, lines),
        "fees": [_render_fee(invoice, line) for line in lines],
        "credits": [],
        "metadata": [{"lago_id": None, "key": "odoo_move_id", "value": str(invoice.odoo_move_id),
                      "created_at": iso_seconds(invoice.created_at)}],
        "applied_taxes": [],
        "error_details": [],
        "applied_invoice_custom_sections": [],
    }
