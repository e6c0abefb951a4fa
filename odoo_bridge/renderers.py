"""Lago's invoice object (Lago API reference notes §4.7) from the Invoice mirror.

Amounts are integer cents; every field the Lago Python client requires is present.
Webhook payloads use this same function.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from billing_kit.formatting import iso_seconds, minor_unit_exponent, to_cents
from coupons.renderers import render_credit
from identity.renderers import render_customer
from identity.models import AccountLink
from metering.models import MinimumCommitment, Plan, PlanFeeKind
from metering.renderers import render_subscription

from .models import (CreditNote, CreditNoteItem, CreditNoteRequest, CreditNoteStatus, Invoice, InvoiceLine,
                     InvoicePaymentStatus, InvoiceStatus, OneOffInvoice)

INVOICE_TYPES = {"out_invoice": "subscription"}


def _plain(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros ("50", "0.5"): ``str(Decimal("50").normalize())``
    is "5E+1", which no decimal reading accepts."""
    return format(value.normalize(), "f")


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _link(invoice: Invoice | CreditNote) -> AccountLink | None:
    """The service account the invoice bills: never looked up through the unified customer."""
    if invoice.account_link is not None:
        return invoice.account_link
    subscription = invoice.subscription
    return subscription.account_link if subscription is not None else None


def _commitment_name(plan: Plan) -> str | None:
    """Lago's ``Commitment#invoice_name``: its display name, else "Minimum commitment"."""
    try:
        commitment = plan.minimum_commitment
    except MinimumCommitment.DoesNotExist:
        return None  # removed since the true-up was billed: the line's own label stays
    return commitment.invoice_display_name or "Minimum commitment"


def _render_fee(invoice: Invoice, line: InvoiceLine) -> dict[str, Any]:
    return _fee(line, lago_id=f"{invoice.pk}-{line.odoo_line_id or line.pk}", lago_invoice_id=str(invoice.pk),
                owner=invoice, payment_status=invoice.payment_status)


def _fee(line: InvoiceLine | CreditNoteItem, *, lago_id: str, lago_invoice_id: str | None,
         owner: Invoice | CreditNote, payment_status: str) -> dict[str, Any]:
    """Lago's fee of an invoice line or of a credit note item (which links no plan fee nor one-off line)."""
    invoice = owner
    subscription = line.subscription or invoice.subscription
    usage = line.rated_usage
    charge = line.charge
    fee = line.plan_fee if isinstance(line, InvoiceLine) else None
    one_off_line = line.one_off_line if isinstance(line, InvoiceLine) else None
    taxes = line.total_amount - line.amount
    cur = invoice.currency
    item: dict[str, Any]
    if one_off_line is not None:
        subscription = None
        add_on = one_off_line.add_on
        if add_on is not None:
            item = {"type": "add_on", "code": add_on.code, "name": add_on.name,
                    "invoice_display_name": one_off_line.name, "lago_item_id": str(add_on.pk),
                    "item_type": "AddOn"}
        else:
            item = {"type": "credit", "code": "credit", "name": "credit", "invoice_display_name": one_off_line.name,
                    "lago_item_id": str(one_off_line.one_off.wallet_transaction_id or ""),
                    "item_type": "WalletTransaction"}
    elif charge is not None:
        item = {"type": "charge", "code": charge.metric.code, "name": charge.metric.name,
                "invoice_display_name": charge.invoice_display_name or line.name, "lago_item_id": str(charge.pk),
                "item_type": "BillableMetric"}
    else:
        plan = subscription.plan if subscription else None
        # Lago's fee types of a subscription's flat part: `subscription` (base fee; a credit of
        # unused time is a negative one here) and `commitment` (the minimum commitment's true-up,
        # Lago's item stays the Subscription, its name the commitment's invoice name).
        commitment = fee is not None and fee.kind == PlanFeeKind.COMMITMENT
        display = line.name
        if commitment and plan is not None:
            display = _commitment_name(plan) or line.name
        item = {"type": "commitment" if commitment else "subscription", "code": plan.code if plan else "",
                "name": plan.name if plan else line.name, "invoice_display_name": display,
                "lago_item_id": str(subscription.pk) if subscription else None, "item_type": "Subscription"}
    window = (usage.window_start, usage.window_end) if usage else (fee.window_start, fee.window_end) if fee else None
    return {
        "lago_id": lago_id,
        "lago_charge_id": str(charge.pk) if charge else None,
        "lago_invoice_id": lago_invoice_id,
        "lago_subscription_id": str(subscription.pk) if subscription else None,
        "external_subscription_id": subscription.external_id if subscription else None,
        "lago_customer_id": str(invoice.account_link_id) if invoice.account_link_id else None,
        "item": item,
        "pay_in_advance": False, "invoiceable": True,
        "amount_cents": to_cents(line.amount, cur), "amount_currency": cur,
        "precise_amount": str(line.amount),
        "taxes_amount_cents": to_cents(taxes, cur), "total_amount_cents": to_cents(line.total_amount, cur),
        "total_amount_currency": cur,
        "taxes_rate": float(sum((Decimal(t["rate"]) for t in line.taxes), Decimal(0))),  # ok-float: Lago's type
        "applied_taxes": [{"lago_id": f"{lago_id}-tax-{t['odoo_tax_id']}", "lago_fee_id": lago_id,
                           **_tax_fields(t), "amount_cents": to_cents(Decimal(t["amount"]), cur),
                           "amount_currency": cur, "created_at": iso_seconds(invoice.created_at)}
                          for t in line.taxes],
        "sub_total_excluding_taxes_amount_cents": to_cents(line.amount, cur),
        "sub_total_excluding_taxes_precise_amount_cents": str(line.amount.scaleb(minor_unit_exponent(cur))),
        "units": _plain(line.quantity), "total_aggregated_units": _plain(usage.units if usage else line.quantity),
        "precise_unit_amount": _plain(line.unit_amount),
        "events_count": usage.events_count if usage else None,
        "description": (one_off_line.description or None) if one_off_line is not None else None,
        "payment_status": payment_status,
        "from_date": iso_seconds(window[0]) if window else None,
        "to_date": iso_seconds(window[1]) if window else None,
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
    all_lines = list(invoice.lines.all())
    cur = invoice.currency
    # Lines that are not fees: prepaid credits (Lago's prepaid_credit_amount, an untaxed negative line)
    # and coupon discounts (Lago's credits). Fees are before both; the subtotal is after coupons.
    lines = [ln for ln in all_lines if not ln.prepaid_credit and ln.coupon_discount_id is None]
    discount_lines = [ln for ln in all_lines if ln.coupon_discount_id is not None]
    coupons = to_cents(-sum((ln.amount for ln in discount_lines), Decimal(0)), cur)
    credits = to_cents(-sum((ln.amount for ln in all_lines if ln.prepaid_credit), Decimal(0)), cur)
    sub_total = to_cents(invoice.fees_amount, cur) + credits
    fees_cents = sub_total + coupons
    short = {"lago_id": str(invoice.pk), "payment_status": invoice.payment_status}
    total = to_cents(invoice.total_amount, cur)
    due = to_cents(invoice.total_due_amount, cur)
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
        "invoice_type": invoice.invoice_type or INVOICE_TYPES.get(invoice.odoo_move_type, "subscription"),
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "payment_dispute_lost_at": None,
        "payment_overdue": overdue,
        "currency": invoice.currency,
        "fees_amount_cents": fees_cents,
        "taxes_amount_cents": to_cents(invoice.taxes_amount, cur),
        "progressive_billing_credit_amount_cents": 0,
        "coupons_amount_cents": coupons,
        "credit_notes_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": sub_total,
        "sub_total_including_taxes_amount_cents": total + credits,
        "total_amount_cents": total,
        "total_due_amount_cents": due,
        "total_paid_amount_cents": max(total - due, 0) if invoice.status != InvoiceStatus.VOIDED else 0,
        "total_offsetted_credit_note_amount_cents": 0,
        "prepaid_credit_amount_cents": credits,
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
        "credits": [render_credit(ln.coupon_discount, invoice=short) for ln in discount_lines
                    if ln.coupon_discount is not None],
        "metadata": [{"lago_id": None, "key": "odoo_move_id", "value": str(invoice.odoo_move_id),
                      "created_at": iso_seconds(invoice.created_at)}],
        "applied_taxes": [{"lago_id": f"{invoice.pk}-tax-{e['tax']['odoo_tax_id']}", "lago_invoice_id": str(invoice.pk),
                           **_tax_fields(e["tax"]), "amount_cents": to_cents(e["amount"], cur),
                           "amount_currency": cur, "fees_amount_cents": to_cents(e["base"], cur),
                           "created_at": iso_seconds(invoice.created_at)} for e in applied_taxes(all_lines)],
        "error_details": [],
        "applied_invoice_custom_sections": [],
    }


def render_pending_one_off(one_off: OneOffInvoice) -> dict[str, Any]:
    """A one-off invoice Odoo has not mirrored back yet: Lago's invoice object in ``draft`` with our
    amounts before taxes (Odoo computes the taxes and the number when it posts it). The mirror later
    takes the same ``lago_id``."""
    lines = list(one_off.lines.all())
    fees_amount = sum((ln.amount for ln in lines), Decimal(0))
    cents = to_cents(fees_amount, one_off.currency)
    created = iso_seconds(one_off.created_at)
    link = one_off.account_link
    fees: list[dict[str, Any]] = []
    for line in lines:
        add_on = line.add_on
        item = ({"type": "add_on", "code": add_on.code, "name": add_on.name, "invoice_display_name": line.name,
                 "lago_item_id": str(add_on.pk), "item_type": "AddOn"} if add_on is not None else
                {"type": "credit", "code": "credit", "name": "credit", "invoice_display_name": line.name,
                 "lago_item_id": str(one_off.wallet_transaction_id or ""), "item_type": "WalletTransaction"})
        amount = to_cents(line.amount, one_off.currency)
        fees.append({"lago_id": f"{one_off.pk}-{line.position}", "lago_charge_id": None,
                     "lago_invoice_id": str(one_off.pk), "lago_subscription_id": None,
                     "external_subscription_id": None, "lago_customer_id": str(link.pk), "item": item,
                     "pay_in_advance": False, "invoiceable": True, "amount_cents": amount,
                     "amount_currency": one_off.currency, "precise_amount": str(line.amount),
                     "taxes_amount_cents": 0, "total_amount_cents": amount,
                     "total_amount_currency": one_off.currency,
                     "taxes_rate": 0.0,  # ok-float: Lago's type; Odoo computes the taxes when it posts it
                     "applied_taxes": [], "sub_total_excluding_taxes_amount_cents": amount,
                     "sub_total_excluding_taxes_precise_amount_cents": str(
                         line.amount.scaleb(minor_unit_exponent(one_off.currency))),
                     "units": _plain(line.units), "total_aggregated_units": _plain(line.units),
                     "precise_unit_amount": _plain(line.unit_amount), "events_count": None,
                     "description": line.description or None, "payment_status": InvoicePaymentStatus.PENDING,
                     "from_date": None, "to_date": None, "created_at": created})
    return {
        "lago_id": str(one_off.pk), "billing_entity_code": one_off.service.code, "sequential_id": None,
        "number": "", "purchase_order_number": None, "issuing_date": None, "payment_due_date": None,
        "net_payment_term": 0, "invoice_type": one_off.invoice_type, "status": InvoiceStatus.DRAFT,
        "payment_status": InvoicePaymentStatus.PENDING, "payment_dispute_lost_at": None, "payment_overdue": False,
        "currency": one_off.currency, "fees_amount_cents": cents, "taxes_amount_cents": 0,
        "progressive_billing_credit_amount_cents": 0, "coupons_amount_cents": 0, "credit_notes_amount_cents": 0,
        "sub_total_excluding_taxes_amount_cents": cents, "sub_total_including_taxes_amount_cents": cents,
        "total_amount_cents": cents, "total_due_amount_cents": cents, "total_paid_amount_cents": 0,
        "total_offsetted_credit_note_amount_cents": 0, "prepaid_credit_amount_cents": 0,
        "prepaid_granted_credit_amount_cents": 0, "prepaid_purchased_credit_amount_cents": 0,
        "file_url": None, "xml_url": None, "web_url": None, "version_number": 4, "self_billed": False,
        "created_at": created, "updated_at": created, "voided_at": None,
        "customer": render_customer(link), "subscriptions": [], "billing_periods": [], "fees": fees,
        "credits": [], "metadata": [], "applied_taxes": [], "error_details": [],
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
    request = _request_of(note)
    refund = to_cents(request.refund_amount, currency) if request is not None else 0
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
        # the refund itself is paid out in Odoo (a payment the pull does not attribute): pending here
        "refund_status": "pending" if refund else None,
        "reason": request.reason if request is not None else "other",
        "description": note.reason or None,
        "currency": currency,
        "total_amount_cents": to_cents(note.total_amount, currency),
        "taxes_amount_cents": taxes,
        "taxes_rate": float(rate),  # ok-float: Lago's wire type for a percentage
        "sub_total_excluding_taxes_amount_cents": fees,
        "balance_amount_cents": to_cents(note.balance_amount, currency),
        "credit_amount_cents": to_cents(note.credit_amount, currency),
        "refund_amount_cents": refund,
        "offset_amount_cents": to_cents(note.offset_amount, currency),
        "coupons_adjustment_amount_cents": 0,
        "created_at": iso_seconds(note.created_at),
        "updated_at": iso_seconds(note.updated_at),
        "voided_at": iso_seconds(note.updated_at) if note.status == CreditNoteStatus.VOIDED else None,
        "file_url": note.file_url or None,
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


def _request_of(note: CreditNote) -> CreditNoteRequest | None:
    """The ``POST /credit_notes`` request the note realises (None: a refund made in Odoo)."""
    try:
        return note.request
    except CreditNoteRequest.DoesNotExist:
        return None


def render_pending_credit_note(request: CreditNoteRequest, lines: dict[int, InvoiceLine]) -> dict[str, Any]:
    """A credit note Odoo has not posted yet (unreachable, or its answer lost): Lago's object from the
    request, amounts and taxes as computed here, each item with the fee it credits (``lines``: the
    invoice's lines by Odoo line id). The mirror later takes the same ``lago_id`` with Odoo's figures."""
    invoice = request.invoice
    currency = request.currency
    items = list(request.items.all())
    fees_amount = sum((item.amount for item in items), Decimal(0))
    created = iso_seconds(request.created_at)
    refund = to_cents(request.refund_amount, currency)
    rendered = []
    for item in items:
        line = lines.get(item.odoo_line_id)
        rendered.append({"lago_id": f"{request.pk}-{item.position}", "amount_cents": to_cents(item.amount, currency),
                         "amount_currency": currency,
                         "fee": _render_fee(invoice, line) if line is not None else None})
    fees = to_cents(fees_amount, currency)
    taxes = to_cents(request.taxes_amount, currency)
    rate = (request.taxes_amount / fees_amount * 100).quantize(Decimal("0.01")) if fees_amount else Decimal(0)
    return {
        "lago_id": str(request.pk), "billing_entity_code": request.service.code, "sequential_id": None,
        "number": "", "lago_invoice_id": str(invoice.pk), "invoice_number": invoice.number,
        # Lago dates a credit note when it is created; Odoo's own date replaces it once posted
        "purchase_order_number": None, "issuing_date": request.created_at.date().isoformat(),
        "credit_status": "available" if request.credit_amount else None,
        "refund_status": "pending" if refund else None, "reason": request.reason,
        "description": request.description or None, "currency": currency,
        "total_amount_cents": fees + taxes, "taxes_amount_cents": taxes,
        "taxes_rate": float(rate),  # ok-float: Lago's wire type for a percentage
        "sub_total_excluding_taxes_amount_cents": fees,
        "balance_amount_cents": to_cents(request.credit_amount, currency),
        "credit_amount_cents": to_cents(request.credit_amount, currency), "refund_amount_cents": refund,
        "offset_amount_cents": to_cents(request.offset_amount, currency), "coupons_adjustment_amount_cents": 0,
        "created_at": created, "updated_at": created, "voided_at": None, "file_url": None, "self_billed": False,
        "error_details": [], "customer": render_customer(request.account_link),
        "items": [item for item in rendered if item["fee"] is not None], "applied_taxes": [],
        "metadata": {"odoo_move_id": str(request.odoo_move_id) if request.odoo_move_id else ""},
    }


def render_estimate(found: Any) -> dict[str, Any]:
    """Lago's ``estimated_credit_note`` from ``credit_notes.Estimate``."""
    invoice = found.invoice
    cur = invoice.currency
    exponent = minor_unit_exponent(cur)
    precise_taxes = sum((e["amount"] for e in found.applied_taxes()), Decimal(0))
    rate = (found.taxes_amount / found.fees_amount * 100).quantize(Decimal("0.01")) if found.fees_amount else Decimal(0)
    return {
        "lago_invoice_id": str(invoice.pk), "invoice_number": invoice.number, "currency": cur,
        "taxes_amount_cents": to_cents(found.taxes_amount, cur),
        "precise_taxes_amount_cents": float(precise_taxes.scaleb(exponent)),  # ok-float: Lago's wire type
        "taxes_rate": float(rate),  # ok-float: Lago's wire type
        "sub_total_excluding_taxes_amount_cents": to_cents(found.fees_amount, cur),
        "max_creditable_amount_cents": to_cents(found.max_creditable, cur),
        "max_refundable_amount_cents": to_cents(found.max_refundable, cur),
        "max_offsettable_amount_cents": to_cents(found.max_offsettable, cur),
        "coupons_adjustment_amount_cents": 0, "precise_coupons_adjustment_amount_cents": 0.0,  # ok-float
        "items": [{"amount_cents": to_cents(item.amount, cur), "lago_fee_id": item.fee.lago_id}
                  for item in found.items],
        "applied_taxes": [{**_tax_fields(e["tax"]), "base_amount_cents": to_cents(e["base"], cur),
                           "amount_cents": to_cents(e["amount"], cur), "amount_currency": cur}
                          for e in found.applied_taxes()],
    }
