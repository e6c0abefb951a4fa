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

from .models import CreditNote, CreditNoteItem, CreditNoteStatus, Invoice, InvoiceLine, InvoicePaymentStatus, InvoiceStatus

INVOICE_TYPES = {"out_invoice": "subscription"}


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _link(invoice: Invoice | CreditNote) -> AccountLink | None:
    """The service account the invoice bills: never looked up through the unified customer."""
    if invoice.account_link is not None:
        return invoice.account_link
    subscription = invoice.subscription
    return subscription.account_link if subscription is not None else None


def _render_fee(invoice: Invoice, line: InvoiceLine) -> dict[str, Any]:
    return _fee(line, lago_id=f"{invoice.pk}-{line.odoo_line_id or line.pk}", lago_invoice_id=str(invoice.pk),
                owner=invoice, payment_status=invoice.payment_status)


def _fee(line: InvoiceLine | CreditNoteItem, *, lago_id: str, lago_invoice_id: str | None,
         owner: Invoice | CreditNote, payment_status: str) -> dict[str, Any]:
    invoice = owner
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
        "lago_id": lago_id,
        "lago_charge_id": str(charge.pk) if charge else None,
        "lago_invoice_id": lago_invoice_id,
        "lago_subscription_id": str(subscription.pk) if subscription else None,
        "external_subscription_id": subscription.external_id if subscription else None,
        "lago_customer_id": str(invoice.account_link_id) if invoice.account_link_id else None,
        "item": item,
        "pay_in_advance": False, "invoiceable": True,
        "amount_cents": to_cents(line.amount), "amount_currency": invoice.currency,
        "precise_amount": str(line.amount),
        "taxes_amount_cents": to_cents(taxes), "total_amount_cents": to_cents(line.total_amount),
        "taxes_rate": float(sum((Decimal(t["rate"]) for t in line.taxes), Decimal(0))),  # ok-float: Lago's type
        "applied_taxes": [{"lago_id": f"{lago_id}-tax-{t['odoo_tax_id']}", "lago_fee_id": lago_id,
                           **_tax_fields(t), "amount_cents": to_cents(Decimal(t["amount"])),
                           "amount_currency": invoice.currency, "created_at": iso_seconds(invoice.created_at)}
                          for t in line.taxes],
        "units": str(line.quantity.normalize()), "total_aggregated_units": str(
            (usage.units if usage else line.quantity).normalize()),
        "precise_unit_amount": str(line.unit_amount.normalize()),
        "events_count": usage.events_count if usage else None,
        "payment_status": payment_status,
        "from_date": iso_seconds(usage.window_start) if usage else None,
        "to_date": iso_seconds(usage.window_end) if usage else None,
        "created_at": iso_seconds(invoice.created_at),
    }


def _tax_fields(tax: dict[str, Any]) -> dict[str, Any]:
    """Lago's tax identity of an Odoo tax (Lago has its own tax objects; here Odoo's tax is the truth)."""
    return {"lago_tax_id": f"odoo-tax-{tax['odoo_tax_id']}", "tax_name": tax["name"],
            "tax_code": f"odoo_tax_{tax['odoo_tax_id']}", "tax_rate": float(Decimal(tax["rate"])),  # ok-float
            "tax_description": tax["name"]}


def applied_taxes(lines: list[InvoiceLine] | list[CreditNoteItem]) -> list[dict[str, Any]]:
    """Per Odoo tax: its fields, the tax amount and the base (untaxed amount of the lines it applies to)."""
    by_tax: dict[int, dict[str, Any]] = {}
    for line in lines:
        for tax in line.taxes:
            entry = by_tax.setdefault(tax["odoo_tax_id"], {"tax": tax, "amount": Decimal(0), "base": Decimal(0)})
            entry["amount"] += Decimal(tax["amount"])
            entry["base"] += line.amount
    return [by_tax[key] for key in sorted(by_tax)]


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
        "file_url": invoice.file_url or None, "xml_url": None, "web_url": None,
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
        "applied_taxes": [{"lago_id": f"{invoice.pk}-tax-{e['tax']['odoo_tax_id']}", "lago_invoice_id": str(invoice.pk),
                           **_tax_fields(e["tax"]), "amount_cents": to_cents(e["amount"]),
                           "amount_currency": invoice.currency, "fees_amount_cents": to_cents(e["base"]),
                           "created_at": iso_seconds(invoice.created_at)} for e in applied_taxes(lines)],
        "error_details": [],
        "applied_invoice_custom_sections": [],
    }


def _credit_status(note: CreditNote) -> str | None:
    if note.status == CreditNoteStatus.VOIDED:
        return "voided"
    if note.credit_amount == 0:
        return None  # Lago: no credit part, no credit status
    return "available" if note.balance_amount > 0 else "consumed"


def render_credit_note(note: CreditNote) -> dict[str, Any]:
    """Lago's credit note (``V1::CreditNoteSerializer``) from the mirror of an Odoo refund.

    Prefetch `selectors.credit_note_prefetches()` first. Odoo's reference of the refund is the
    ``description``; Lago's ``reason`` enum has no Odoo counterpart: ``other``.
    """
    currency = note.currency
    items = list(note.items.all())
    link = _link(note)
    fees = to_cents(note.fees_amount, currency)
    taxes = to_cents(note.taxes_amount, currency)
    rate = (note.taxes_amount / note.fees_amount * 100).quantize(Decimal("0.01")) if note.fees_amount else Decimal(0)
    original = note.invoice
    lago_invoice_id = str(original.pk) if original is not None and not original.held_reason else None
    return {
        "lago_id": str(note.pk),
        "billing_entity_code": note.service.code,
        "sequential_id": None,
        "number": note.number,
        "lago_invoice_id": lago_invoice_id,
        "invoice_number": original.number if lago_invoice_id and original is not None else None,
        "purchase_order_number": None,
        "issuing_date": _day(note.issuing_date),
        "credit_status": _credit_status(note),
        "refund_status": None,
        "reason": "other",
        "description": note.reason or None,
        "currency": currency,
        "total_amount_cents": to_cents(note.total_amount, currency),
        "taxes_amount_cents": taxes,
        "taxes_rate": float(rate),  # ok-float: Lago's wire type for a percentage
        "sub_total_excluding_taxes_amount_cents": fees,
        "balance_amount_cents": to_cents(note.balance_amount, currency),
        "credit_amount_cents": to_cents(note.credit_amount, currency),
        "refund_amount_cents": 0,
        "offset_amount_cents": to_cents(note.offset_amount, currency),
        "coupons_adjustment_amount_cents": 0,
        "created_at": iso_seconds(note.created_at),
        "updated_at": iso_seconds(note.updated_at),
        "voided_at": iso_seconds(note.updated_at) if note.status == CreditNoteStatus.VOIDED else None,
        "file_url": None,
        "self_billed": False,
        "error_details": [],
        "customer": render_customer(link) if link is not None else None,
        "items": [{"lago_id": f"{note.pk}-{item.odoo_line_id or item.pk}",
                   "amount_cents": to_cents(item.amount, currency), "amount_currency": currency,
                   "fee": _fee(item, lago_id=f"{note.pk}-{item.odoo_line_id or item.pk}",
                               lago_invoice_id=lago_invoice_id, owner=note, payment_status="succeeded")}
                  for item in items],
        "applied_taxes": [{"lago_id": f"{note.pk}-tax-{e['tax']['odoo_tax_id']}", "lago_credit_note_id": str(note.pk),
                           **_tax_fields(e["tax"]), "amount_cents": to_cents(e["amount"], currency),
                           "amount_currency": currency, "base_amount_cents": to_cents(e["base"], currency),
                           "created_at": iso_seconds(note.created_at)} for e in applied_taxes(items)],
        "metadata": {"odoo_move_id": str(note.odoo_move_id)},
    }
