"""Credit notes made through the API (Lago's ``POST /credit_notes``), realised in Odoo.

Why not Odoo's reversal wizard (``account.move.reversal``): its credit note keeps each line linked to
the sale order lines (``sale_line_ids``), so their ``qty_invoiced`` goes down and the next invoicing
run bills the credited amounts again. Lago's credit note gives money back and bills nothing again.
So the credit note is an ``account.move`` of ``move_type`` ``out_refund`` created directly with the
public ORM (``create`` + ``action_post``):

- ``partner_id`` and ``currency_id`` of the credited invoice, ``reversed_entry_id`` = the invoice,
  ``ref`` = ``fb-cn-<lago_id>`` (searched before any create: a lost answer never makes a second one);
- one line per item: the fee's product and the fee's Odoo taxes (``tax_ids`` of the invoice line,
  read from Odoo), quantity 1 at the credited amount, and NO ``sale_line_ids``: the order lines'
  ``qty_invoiced`` is untouched, nothing is rebilled.

The request is stored first (``CreditNoteRequest`` + items, validated as lago-api's
``CreditNotes::ValidateService`` / ``ValidateItemService`` under a lock of the invoice row), then
realised at once (``realise_now``: the answer is Odoo's posted credit note, mirrored by
``pull.pull_move`` with its ``credit_note.created`` webhook); when Odoo cannot be reached or its
answer is lost, the request stays pending (its state row, kind ``credit_note``) and the push cycle's
step ``push_credit_notes`` realises it, searching by ``ref`` first. The mirror keeps the request's pk
as the credit note's ``lago_id``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, QuerySet, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from billing_kit.errors import ErrorCode, NotAllowed, NotFound, ValidationFailed
from billing_kit.formatting import from_cents, minor_unit_exponent
from identity.models import Service

from .client import OdooClient, OdooError
from .connection import CycleAborted, odoo_settings, open_client, record_connection_failure
from .models import (CreditNote, CreditNoteRequest, CreditNoteRequestItem, CreditNoteStatus, Invoice, InvoiceLine,
                     InvoicePaymentStatus, InvoiceStatus, OdooSyncState, OneOffInvoiceType, SyncKind, SyncStatus)
from .pricing import to_odoo_number
from .pull import pull_move
from .selectors import invoice_by_lago_id
from .state_book import StateBook

logger = logging.getLogger(__name__)

REF_PREFIX = "fb-cn-"


def fee_lago_id(invoice: Invoice, line: InvoiceLine) -> str:
    """The fee's ``lago_id`` as ``renderers.render_invoice`` answers it."""
    return f"{invoice.pk}-{line.odoo_line_id or line.pk}"


@dataclass(frozen=True)
class Fee:
    """A fee of the invoice that can be credited: its line, what is left of it, its Odoo tax rate (%)."""

    line: InvoiceLine
    lago_id: str
    remaining: Decimal
    tax_rate: Decimal


@dataclass(frozen=True)
class ItemSpec:
    fee: Fee
    amount: Decimal


@dataclass(frozen=True)
class Estimate:
    """What a credit note of these items would be (Lago's estimate, computed here from the fees)."""

    invoice: Invoice
    items: list[ItemSpec]
    fees_amount: Decimal
    taxes_amount: Decimal
    max_creditable: Decimal
    max_refundable: Decimal
    max_offsettable: Decimal
    fee_total: Decimal  # Lago's fee_total_amount_cents: the invoice's fees, taxes included

    @property
    def total(self) -> Decimal:
        return self.fees_amount + self.taxes_amount

    def applied_taxes(self) -> list[dict[str, Any]]:
        """Per Odoo tax of the credited fees: its fields, the tax on the credited amounts and their base."""
        by_tax: dict[int, dict[str, Any]] = {}
        for item in self.items:
            for tax in item.fee.line.taxes:
                entry = by_tax.setdefault(tax["odoo_tax_id"], {"tax": tax, "amount": Decimal(0), "base": Decimal(0)})
                entry["amount"] += item.amount * Decimal(tax["rate"]) / 100
                entry["base"] += item.amount
        return [by_tax[key] for key in sorted(by_tax)]


def _tax_rate(line: InvoiceLine) -> Decimal:
    return sum((Decimal(t["rate"]) for t in line.taxes), Decimal(0))


def creditable_invoice(*, service: Service, invoice_id: str) -> Invoice:
    """The caller's invoice (404 ``invoice_not_found``), finalized (405 ``invalid_type_or_status``)."""
    invoice = invoice_by_lago_id(service=service, lago_id=invoice_id)
    if invoice is None:
        raise NotFound(ErrorCode.INVOICE_NOT_FOUND)
    # A paid wallet top-up (invoice_type credit) would also void the wallet's credits in Lago: not built.
    if invoice.status != InvoiceStatus.FINALIZED or invoice.invoice_type == OneOffInvoiceType.CREDIT:
        raise NotAllowed(ErrorCode.INVALID_TYPE_OR_STATUS)
    return invoice


def creditable_fees(invoice: Invoice) -> dict[str, Fee]:
    """The invoice's fees (not prepaid credits nor coupon discounts) by ``lago_id``, each with its amount
    less every earlier credit note item of it (Lago's ``fee.creditable_amount_cents``)."""
    credited = dict(CreditNoteRequestItem.objects.filter(invoice=invoice).values_list("odoo_line_id")
                    .annotate(total=Sum("amount")).values_list("odoo_line_id", "total"))
    fees = {}
    for line in invoice.lines.all():
        if line.prepaid_credit or line.coupon_discount_id is not None or not line.odoo_line_id:
            continue
        remaining = max(line.amount - (credited.get(line.odoo_line_id) or Decimal(0)), Decimal(0))
        fees[fee_lago_id(invoice, line)] = Fee(line=line, lago_id=fee_lago_id(invoice, line), remaining=remaining,
                                               tax_rate=_tax_rate(line))
    return fees


def _already_credited(invoice: Invoice) -> tuple[Decimal, Decimal, Decimal]:
    """(credited, refunded, total) of the invoice's earlier credit notes: ours by their split, the ones
    made in Odoo (an accountant's partial reversal) by their total, counted as credit."""
    ours = CreditNoteRequest.objects.filter(invoice=invoice).aggregate(
        credit=Sum("credit_amount"), refund=Sum("refund_amount"), offset=Sum("offset_amount"))
    credit, refund = ours["credit"] or Decimal(0), ours["refund"] or Decimal(0)
    odoo_made = CreditNote.objects.filter(invoice=invoice, request__isnull=True).exclude(
        status__in=[CreditNoteStatus.VOIDED, CreditNoteStatus.DRAFT]).aggregate(total=Sum("total_amount"))["total"]
    credit += odoo_made or Decimal(0)
    return credit, refund, credit + refund + (ours["offset"] or Decimal(0))


def estimate(*, invoice: Invoice, items: Sequence[dict[str, Any]]) -> Estimate:
    """Lago's item rules (``ValidateItemService``): each fee of the invoice (404 ``fee_not_found``), amount
    ≥ 0 (``invalid_value``) and ≤ what is left of the fee (``higher_than_remaining_fee_amount``).
    Taxes are the fees' Odoo taxes on the credited amounts, summed precisely and rounded once."""
    currency = invoice.currency
    fees = creditable_fees(invoice)
    specs: list[ItemSpec] = []
    asked: dict[str, Decimal] = {}
    for raw in items:
        fee = fees.get(str(raw["fee_id"]))
        if fee is None:
            raise NotFound(ErrorCode.FEE_NOT_FOUND)
        cents = int(raw["amount_cents"])
        if cents < 0:
            raise ValidationFailed({"amount_cents": [ErrorCode.INVALID_VALUE]})
        amount = from_cents(cents, currency)
        asked[fee.lago_id] = asked.get(fee.lago_id, Decimal(0)) + amount
        if asked[fee.lago_id] > fee.remaining:
            raise ValidationFailed({"amount_cents": [ErrorCode.HIGHER_THAN_REMAINING_FEE_AMOUNT]})
        specs.append(ItemSpec(fee=fee, amount=amount))
    quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
    fees_amount = sum((s.amount for s in specs), Decimal(0))
    taxes = sum((s.amount * s.fee.tax_rate / 100 for s in specs), Decimal(0)).quantize(quantum, ROUND_HALF_UP)
    fee_total = sum((f.line.total_amount for f in fees.values() if f.line.amount > 0), Decimal(0))
    credited, refunded, total_before = _already_credited(invoice)
    paid = invoice.total_amount - invoice.total_due_amount
    left = max(fee_total - total_before, Decimal(0))
    return Estimate(invoice=invoice, items=specs, fees_amount=fees_amount, taxes_amount=taxes,
                    max_creditable=min(fees_amount + taxes, left),
                    max_refundable=min(fees_amount + taxes, max(paid - refunded, Decimal(0)), left),
                    max_offsettable=min(fees_amount + taxes, invoice.total_due_amount, left), fee_total=fee_total)


def create_credit_note(*, service: Service, invoice_id: str, items: Sequence[dict[str, Any]], reason: str,
                       description: str, credit_amount_cents: int, refund_amount_cents: int,
                       offset_amount_cents: int) -> CreditNoteRequest:
    """Lago's ``CreditNotes::CreateService``: validated under a lock of the invoice row (two concurrent
    credit notes cannot both take what is left of a fee), stored; realised in Odoo by ``realise_now``."""
    with transaction.atomic():
        invoice = creditable_invoice(service=service, invoice_id=invoice_id)
        Invoice.objects.select_for_update().filter(pk=invoice.pk).first()
        found = estimate(invoice=invoice, items=items)
        currency = invoice.currency
        credit, refund, offset = (from_cents(c, currency) for c in
                                  (credit_amount_cents, refund_amount_cents, offset_amount_cents))
        errors: dict[str, list[str]] = {}
        if min(credit, refund, offset) < 0:
            raise ValidationFailed({"base": [ErrorCode.INVALID_VALUE]})
        if credit + refund + offset != found.total:
            errors.setdefault("base", []).append(ErrorCode.DOES_NOT_MATCH_ITEM_AMOUNTS)
        if found.total <= 0:
            errors.setdefault("base", []).append(ErrorCode.INVALID_AMOUNT)
        if refund > 0 and invoice.payment_status != InvoicePaymentStatus.SUCCEEDED:
            errors.setdefault("refund_amount_cents", []).append(ErrorCode.CANNOT_REFUND_UNPAID_INVOICE)
        credited, refunded, total_before = _already_credited(invoice)
        fee_total = found.fee_total
        if refund > invoice.total_amount - refunded:
            errors.setdefault("refund_amount_cents", []).append(ErrorCode.HIGHER_THAN_REMAINING_INVOICE_AMOUNT)
        if credit > fee_total - credited:
            errors.setdefault("credit_amount_cents", []).append(ErrorCode.HIGHER_THAN_REMAINING_INVOICE_AMOUNT)
        if offset > invoice.total_due_amount:
            errors.setdefault("offset_amount_cents", []).append(ErrorCode.HIGHER_THAN_REMAINING_INVOICE_AMOUNT)
        if credit + refund + offset > fee_total - total_before:
            errors.setdefault("base", []).append(ErrorCode.HIGHER_THAN_REMAINING_INVOICE_AMOUNT)
        if errors:
            raise ValidationFailed(errors)
        link = invoice.account_link or (invoice.subscription.account_link if invoice.subscription else None)
        assert link is not None  # invoices_for_service serves only invoices of an account of the service
        request = CreditNoteRequest.objects.create(
            service=service, account_link=link, invoice=invoice, reason=reason, description=description,
            currency=currency, credit_amount=credit, refund_amount=refund, offset_amount=offset,
            taxes_amount=found.taxes_amount)
        CreditNoteRequestItem.objects.bulk_create([
            CreditNoteRequestItem(request=request, position=n, invoice=invoice,
                                  odoo_line_id=spec.fee.line.odoo_line_id or 0,  # creditable fees have one
                                  fee_lago_id=spec.fee.lago_id, amount=spec.amount)
            for n, spec in enumerate(found.items)])
    return request


# ---------------------------------------------------------------- realisation in Odoo
def pending_requests() -> QuerySet[CreditNoteRequest]:
    """Credit notes not yet posted in Odoo and mirrored (their state row is not synced final)."""
    done = OdooSyncState.objects.filter(kind=SyncKind.CREDIT_NOTE,
                                        object_id=Cast(OuterRef("pk"), output_field=CharField()),
                                        status=SyncStatus.SYNCED, final=True)
    return CreditNoteRequest.objects.filter(~Exists(done)).order_by("created_at", "id")


def move_vals(request: CreditNoteRequest, original: dict, lines: dict[int, dict], price_digits: int) -> dict[str, Any]:
    """The refund: the invoice's partner and currency, ``reversed_entry_id``, one line per item with the fee's
    product and taxes at the credited amount, and no ``sale_line_ids`` (nothing becomes invoiceable again)."""
    quantum = Decimal(1).scaleb(-price_digits)
    invoice_lines = []
    for item in request.items.all():
        if item.amount == 0:
            continue
        line = lines[item.odoo_line_id]
        product = line.get("product_id")
        invoice_lines.append([0, 0, {
            "product_id": product[0] if isinstance(product, list) else (product or False),
            "name": (line.get("name") or "")[:512], "quantity": 1.0,
            "price_unit": to_odoo_number(Decimal(item.amount).quantize(quantum)),
            "tax_ids": [[6, 0, list(line.get("tax_ids") or [])]]}])
    partner, currency = original["partner_id"], original["currency_id"]
    return {"move_type": "out_refund", "ref": request.reference,
            "partner_id": partner[0] if isinstance(partner, list) else partner,
            "currency_id": currency[0] if isinstance(currency, list) else currency,
            "reversed_entry_id": original["id"],
            "invoice_origin": original.get("name") or False,
            "invoice_line_ids": invoice_lines}


def realise(request: CreditNoteRequest, *, client: OdooClient, book: StateBook) -> CreditNote | None:
    """Find (by ``ref``) or create the refund, post it, mirror it; raises ``OdooError`` (the state row says
    so, and the push cycle retries: the search finds a move whose create answer was lost)."""
    state = book.get(SyncKind.CREDIT_NOTE, request.pk, service_id=request.service_id, reference=request.reference,
                     label=str(request)[:255], odoo_model="account.move")
    try:
        found = client.search_read("account.move", [["ref", "=", request.reference],
                                                    ["move_type", "=", "out_refund"]], ["state"], limit=1)
        if found:
            move_id, move_state = found[0]["id"], found[0]["state"]
        else:
            invoice = request.invoice
            [original] = client.call("account.move", "read", [[invoice.odoo_move_id]],
                                     {"fields": ["partner_id", "currency_id", "name", "state"]})
            line_ids = sorted({item.odoo_line_id for item in request.items.all()})
            lines = {row["id"]: row for row in client.call("account.move.line", "read", [line_ids],
                                                           {"fields": ["product_id", "name", "tax_ids"]})}
            [move_id] = client.create("account.move", [move_vals(request, original, lines,
                                                                 client.fields.price_digits)])
            move_state = "draft"
        if request.odoo_move_id != move_id:
            request.odoo_move_id = move_id
            request.save(update_fields=["odoo_move_id"])
        if move_state == "draft":
            client.call("account.move", "action_post", [[move_id]], {})
        note = pull_move(client=client, move_id=move_id)
    except OdooError as exc:
        book.failed(state, exc)
        raise
    if not isinstance(note, CreditNote):
        book.failed(state, "the posted refund was not mirrored")
        return None
    book.synced(state, odoo_id=move_id, pushed_hash="posted", final=True)
    return note


def realise_now(request: CreditNoteRequest) -> CreditNote | None:
    """``POST /credit_notes``' own attempt, after its transaction committed; None: pending (Odoo not reached
    or its answer lost), for the push cycle to finish.

    Inside a transaction still open (a request with an ``Idempotency-Key`` runs in one) nothing is sent:
    Odoo would hold a refund whose request a rollback could still undo. The push cycle realises it."""
    if transaction.get_connection().in_atomic_block:
        return None
    book = StateBook(timezone.now())
    try:
        client = open_client()
        return realise(request, client=client, book=book)
    except CycleAborted as exc:
        logger.warning("credit note %s waits for Odoo: %s", request.reference, exc)
        return None
    except OdooError as exc:
        record_connection_failure(exc, settings_=odoo_settings())
        logger.warning("credit note %s waits for the push cycle: %s", request.reference, exc)
        return None
    finally:
        book.save()


def push_credit_notes(client: OdooClient, *, now: dt.datetime, limit: int = 100) -> int:
    """The push cycle's credit-note step: every pending request whose state row is due, oldest first."""
    book = StateBook(now)
    batch = list(pending_requests().select_related("invoice", "service")[:limit])
    book.load(SyncKind.CREDIT_NOTE, [str(r.pk) for r in batch])
    done = 0
    try:
        for request in batch:
            state = book.get(SyncKind.CREDIT_NOTE, request.pk, service_id=request.service_id,
                             reference=request.reference, label=str(request)[:255], odoo_model="account.move")
            if not book.due(state):
                continue
            try:
                if realise(request, client=client, book=book) is not None:
                    done += 1
            except OdooError as exc:
                if exc.retryable:
                    raise  # Odoo is not answering: the next cycle goes on
                logger.warning("credit note %s refused by Odoo: %s", request.reference, exc)
    finally:
        book.save()
    return done
