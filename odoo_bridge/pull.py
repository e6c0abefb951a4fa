"""Pull invoices and credit notes back from Odoo into their mirrors, and tell the apps.

``account.move`` (customer invoices and refunds) of our partners changed since the
stored ``write_date`` cursor are read page by page (``>=`` the cursor: Odoo's
write_date has second precision, so the boundary second is re-read; the mirror
is idempotent). Each move is mirrored in its own transaction together with the
webhook events it causes (outbox): ``invoice.created`` (and ``invoice.generated``)
when it is first seen posted, ``invoice.payment_status_updated`` when the payment
status changes, ``invoice.voided`` when it is cancelled or fully reversed. Refunds
(``out_refund``) are credit notes (``CreditNote``, never an Invoice row):
``credit_note.created`` when first seen posted.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from billing_kit.formatting import minor_unit_exponent
from coupons.selectors import discounts_of_lines
from identity.models import AccountLink, Service
from metering.models import Charge, PlanFee, RatedUsage, Subscription, SubscriptionMode
from wallets import services as wallet_services
from webhooks.event_types import WebhookType
from webhooks.services import record_event

from .client import OdooClient, OdooError, OdooSettings
from .connection import (
    ADVISORY_NAMESPACE_CYCLE,
    CycleAborted,
    advisory_locks,
    odoo_settings,
    open_client,
    portal_base_url,
    record_connection_failure,
)
from .models import (
    CreditNote,
    CreditNoteItem,
    CreditNoteRequest,
    CreditNoteStatus,
    Invoice,
    InvoiceLine,
    InvoicePaymentStatus,
    InvoiceStatus,
    OdooPullCursor,
    OneOffInvoice,
    OneOffInvoiceType,
    OdooSyncState,
    SyncKind,
)
from .pricing import decimal_from_odoo
from .renderers import render_credit_note, render_invoice
from .selectors import credit_note_prefetches, render_prefetches

logger = logging.getLogger(__name__)

CURSOR_NAME = "account.move"
TRANSACTION_CURSOR_NAME = "payment.transaction"
TRANSACTION_FIELDS = ["reference", "state", "state_message", "provider_code", "invoice_ids", "partner_id",
                      "write_date"]
MOVE_FIELDS = ["name", "move_type", "state", "payment_state", "partner_id", "invoice_date", "invoice_date_due",
               "currency_id", "amount_untaxed", "amount_tax", "amount_total", "amount_residual", "invoice_origin",
               "reversed_entry_id", "write_date", "ref", "access_url", "access_token"]
LINE_FIELDS = ["move_id", "product_id", "name", "quantity", "price_unit", "price_subtotal", "price_total",
               "subscription_id", "sale_line_ids", "tax_ids"]
TAX_FIELDS = ["name", "amount", "amount_type"]
PAID_STATES = {"paid", "in_payment"}


@dataclass
class PullReport:
    moves_seen: int = 0
    invoices_created: int = 0
    invoices_updated: int = 0
    credit_notes_created: int = 0
    credit_notes_updated: int = 0
    unmatched: int = 0
    held: int = 0
    payment_failures: int = 0
    tax_rates_refreshed: int = 0
    events: int = 0
    round_trips: int = 0
    cursor: str = ""
    aborted: str = ""


def mirror_status(move: dict) -> str:
    if move["state"] == "cancel" or move.get("payment_state") == "reversed":
        return InvoiceStatus.VOIDED
    if move["state"] == "posted":
        return InvoiceStatus.FINALIZED
    return InvoiceStatus.DRAFT


def mirror_payment_status(move: dict) -> str:
    return InvoicePaymentStatus.SUCCEEDED if move.get("payment_state") in PAID_STATES else InvoicePaymentStatus.PENDING


def _m2o(value: Any) -> int | None:
    return value[0] if isinstance(value, list) and value else (value or None)


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _odoo_datetime(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)


def pull_invoices(*, client: OdooClient | None = None, settings_: OdooSettings | None = None) -> PullReport:
    settings_ = settings_ or odoo_settings()
    report = PullReport()
    try:
        client = client or open_client(settings_)
    except CycleAborted as exc:
        report.aborted = str(exc)
        return report
    start_trips = client.round_trips
    with advisory_locks(ADVISORY_NAMESPACE_CYCLE, ["pull"]) as held:
        if "pull" not in held:
            report.aborted = "another pull is running"
            return report
        cursor, _ = OdooPullCursor.objects.get_or_create(name=CURSOR_NAME)
        newest = cursor.write_date
        page_size = settings.ODOO_PULL_PAGE_SIZE
        offset = 0
        try:
            while True:
                domain = [["move_type", "in", ["out_invoice", "out_refund"]], ["write_date", ">=", cursor.write_date],
                          ["commercial_partner_id.ref", "=like", "fb-cus-%"]]
                moves = client.call("account.move", "search_read", [domain],
                                    {"fields": MOVE_FIELDS, "order": "write_date asc, id asc", "limit": page_size,
                                     "offset": offset})
                if not moves:
                    break
                _mirror_moves(client, moves, report)
                for move in moves:
                    newest = max(newest, move.get("write_date") or newest)
                if len(moves) < page_size:
                    break
                offset += page_size
        except OdooError as exc:
            report.aborted = str(exc)
            record_connection_failure(exc, settings_=settings_)
        cursor.write_date = newest
        cursor.last_run_at = timezone.now()
        cursor.save(update_fields=["write_date", "last_run_at", "updated_at"])
        report.cursor = newest
        if not report.aborted:
            try:
                pull_failed_transactions(client=client, report=report)
                report.tax_rates_refreshed = refresh_tax_rates(client=client)
            except OdooError as exc:
                report.aborted = str(exc)
                record_connection_failure(exc, settings_=settings_)
    report.round_trips = client.round_trips - start_trips
    logger.info("odoo pull: %s", report)
    return report


def _mirror_moves(client: OdooClient, moves: list[dict], report: PullReport) -> list[Invoice | CreditNote | None]:
    """Mirror these moves (read with MOVE_FIELDS): their product lines in one call, their orders in one more."""
    ids = [m["id"] for m in moves]
    lines = client.call("account.move.line", "search_read",
                        [[["move_id", "in", ids], ["display_type", "=", "product"]]],
                        {"fields": LINE_FIELDS, "order": "move_id, id"})
    lines_by_move: dict[int | None, list[dict]] = {}
    for line in lines:
        lines_by_move.setdefault(_m2o(line["move_id"]), []).append(line)
    order_of_sale_line = _orders_of_sale_lines(client, lines)
    taxes = _taxes_of_lines(client, lines)
    for line in lines:
        line["_taxes"] = [taxes[t] for t in line.get("tax_ids") or [] if t in taxes]

    def portal_pdf(move: dict) -> str:
        # portal.mixin get_portal_url(report_type="pdf", download=True); an invoice already sent has its access
        # token (made when it was mailed), so the link is built from what the page read, without a call
        if move.get("access_token") and move.get("access_url"):
            return f'{move["access_url"]}?access_token={move["access_token"]}&report_type=pdf&download=true'
        return str(client.call("account.move", "get_portal_url", [[move["id"]]],
                               {"report_type": "pdf", "download": True}))

    one_offs = one_offs_of_moves(moves)
    mirrored = []
    for move in moves:
        report.moves_seen += 1
        mirrored.append(mirror_move(move, lines_by_move.get(move["id"], []), report,
                                    order_of_sale_line=order_of_sale_line, one_offs=one_offs,
                                    portal_pdf=portal_pdf))
    return mirrored


def pull_move(*, client: OdooClient, move_id: int) -> Invoice | CreditNote | None:
    """Mirror one move now, whatever the cursor (an invoice action's answer is Odoo's state after it).

    Its events are recorded as by the pull; the cursor pull will find nothing new to say about it."""
    moves = client.call("account.move", "read", [[move_id]], {"fields": MOVE_FIELDS})
    return _mirror_moves(client, moves, PullReport())[0] if moves else None


def _taxes_of_lines(client: OdooClient, lines: list[dict]) -> dict[int, dict]:
    """account.tax id -> its name, amount and type, for every tax of these lines (one call, when there are some)."""
    ids = sorted({t for line in lines for t in (line.get("tax_ids") or [])})
    if not ids:
        return {}
    return {row["id"]: row for row in client.call("account.tax", "read", [ids], {"fields": TAX_FIELDS})}


def line_taxes(line: dict, tax_amount: Decimal, digits: int) -> list[dict[str, Any]]:
    """The line's taxes with their share of its tax amount (Odoo's ``price_total - price_subtotal``).

    One tax takes it all; several share it by weight (a percentage's rate, a fixed tax's amount), the
    last taking the rounding remainder, so the shares add up to what Odoo charged."""
    taxes = line.get("_taxes") or []
    weights = [Decimal(str(t.get("amount") or 0)) for t in taxes]
    total_weight = sum(weights, Decimal(0))
    out: list[dict[str, Any]] = []
    left = tax_amount
    quantum = Decimal(1).scaleb(-digits)
    for i, (tax, weight) in enumerate(zip(taxes, weights)):
        if i == len(taxes) - 1:
            share = left
        else:
            share = (tax_amount * weight / total_weight).quantize(quantum) if total_weight else Decimal(0)
        left -= share
        out.append({"odoo_tax_id": tax["id"], "name": tax.get("name") or "",
                    "rate": str(Decimal(str(tax.get("amount") or 0)).normalize())
                    if tax.get("amount_type", "percent") == "percent" else "0",
                    "amount": str(share)})
    return out


def _orders_of_sale_lines(client: OdooClient, lines: list[dict]) -> dict[int, int]:
    """sale.order.line id -> its sale.order id, for every order line the invoice lines came from (one call)."""
    ids = sorted({i for line in lines for i in (line.get("sale_line_ids") or [])})
    if not ids:
        return {}
    rows = client.call("sale.order.line", "read", [ids], {"fields": ["order_id"]})
    return {row["id"]: order for row in rows if (order := _m2o(row.get("order_id"))) is not None}


@dataclass
class Attribution:
    """Whose lines a move carries: each line's subscription (None: linked to none of our orders)."""

    primary: Subscription | None
    line_subscriptions: Sequence[Subscription | None]
    held_reason: str = ""


def _line_order(line: dict, order_of_sale_line: dict[int, int]) -> int | None:
    # The order a line was invoiced from is that of its sale line; `subscription_id` is only set on lines
    # of a running subscription, so it is the fallback (a line typed on the invoice by hand carries neither).
    for sale_line_id in line.get("sale_line_ids") or []:
        if sale_line_id in order_of_sale_line:
            return order_of_sale_line[sale_line_id]
    return _m2o(line.get("subscription_id"))


def attribute_move(move: dict, lines: list[dict], order_of_sale_line: dict[int, int]) -> Attribution:
    """Attribute each line to the service account of its order; a move spanning two accounts is held."""
    line_orders = [_line_order(line, order_of_sale_line) for line in lines]
    by_order: dict[int, Subscription] = {}
    for sub in (Subscription.objects.filter(odoo_sale_order_id__in={o for o in line_orders if o is not None})
                .select_related("service", "account_link__customer", "plan").order_by("created_at")):
        by_order[sub.odoo_sale_order_id] = sub  # type: ignore[index]  # the newest subscription of an order wins
    attributed = [by_order.get(order) if order is not None else None for order in line_orders]
    known = [sub for sub in attributed if sub is not None]
    primary = max(known, key=lambda sub: sub.created_at) if known else None
    original = None
    reversed_id = _m2o(move.get("reversed_entry_id"))
    if reversed_id:
        original = Invoice.objects.filter(odoo_move_id=reversed_id).select_related(
            "subscription__service", "subscription__account_link__customer", "subscription__plan").first()
    if primary is None and original is not None:
        primary = original.subscription
    if primary is None:
        return Attribution(primary=None, line_subscriptions=attributed)
    # a line linked to none of our orders (typed on the invoice, a credit note typed by hand) belongs to
    # the account the rest of the move bills
    line_subscriptions = [sub or primary for sub in attributed]
    accounts = {sub.account_link_id: sub for sub in line_subscriptions}
    held_reason = ""
    if len(accounts) > 1:
        names = sorted(f"{sub.service.code}:{sub.account_link.external_id}" for sub in accounts.values())
        held_reason = f"lines of {len(accounts)} service accounts ({', '.join(names)})"
    elif original is not None and original.held_reason:
        held_reason = f"credit note of held invoice {original.number or original.odoo_move_id}"
    return Attribution(primary=primary, line_subscriptions=line_subscriptions, held_reason=held_reason[:512])


ONE_OFF_REF_PREFIX = "fb-oneoff-"


def one_offs_of_moves(moves: list[dict]) -> dict[str, OneOffInvoice]:
    """Our one-off invoices among ``moves`` (and the originals their credit notes reverse), by reference."""
    keys = set()
    for move in moves:
        ref = move.get("ref") or ""
        if isinstance(ref, str) and ref.startswith(ONE_OFF_REF_PREFIX):
            try:
                keys.add(uuid.UUID(ref[len(ONE_OFF_REF_PREFIX):]))
            except ValueError:
                continue
    reversed_ids = {_m2o(m.get("reversed_entry_id")) for m in moves} - {None}
    found = OneOffInvoice.objects.filter(pk__in=keys) if keys else OneOffInvoice.objects.none()
    if reversed_ids:
        found = found | OneOffInvoice.objects.filter(odoo_move_id__in=reversed_ids)
    by_ref: dict[str, OneOffInvoice] = {}
    for one_off in found.select_related("service", "account_link__customer").prefetch_related("lines__add_on"):
        by_ref[one_off.reference] = one_off
        if one_off.odoo_move_id:
            by_ref[f"move:{one_off.odoo_move_id}"] = one_off
    return by_ref


def _one_off_of(move: dict, one_offs: dict[str, OneOffInvoice] | None) -> tuple[OneOffInvoice | None, bool]:
    """The one-off invoice a move is (or, for a credit note, reverses): (one_off, is_its_refund)."""
    if one_offs is None:
        one_offs = one_offs_of_moves([move])
    ref = move.get("ref") or ""
    if move.get("move_type") == "out_invoice" and isinstance(ref, str) and ref in one_offs:
        return one_offs[ref], False
    reversed_id = _m2o(move.get("reversed_entry_id"))
    if move.get("move_type") == "out_refund" and reversed_id and f"move:{reversed_id}" in one_offs:
        return one_offs[f"move:{reversed_id}"], True
    return None, False


CREDIT_NOTE_REF_PREFIX = "fb-cn-"


def credit_request_of(move: dict) -> CreditNoteRequest | None:
    """The ``POST /credit_notes`` request a refund realises (its ``ref``), if any."""
    ref = move.get("ref") or ""
    if move.get("move_type") != "out_refund" or not isinstance(ref, str) or not ref.startswith(CREDIT_NOTE_REF_PREFIX):
        return None
    try:
        key = uuid.UUID(ref[len(CREDIT_NOTE_REF_PREFIX):])
    except ValueError:
        return None
    return (CreditNoteRequest.objects.select_related("service", "account_link__customer", "invoice__subscription")
            .prefetch_related("items").filter(pk=key).first())


def mirror_move(move: dict, lines: list[dict], report: PullReport, *,
                order_of_sale_line: dict[int, int] | None = None,
                one_offs: dict[str, OneOffInvoice] | None = None,
                portal_pdf: Callable[[dict], str] | None = None) -> Invoice | CreditNote | None:
    request = credit_request_of(move)
    if request is not None:
        # a credit note of POST /credit_notes: its lines carry no sale line (nothing is rebilled), so they
        # belong to the credited invoice's subscription, and the request says whose it is
        original = request.invoice
        note_attribution = Attribution(primary=original.subscription,
                                       line_subscriptions=[original.subscription] * len(lines))
        return mirror_credit_note(move, lines, report, attribution=note_attribution, service=request.service,
                                  link=request.account_link, subscription=original.subscription,
                                  default_currency=request.currency, request=request)
    one_off, is_refund = _one_off_of(move, one_offs)
    if one_off is not None:
        # a one-off invoice bills the service account it was made for; it comes from no order
        attribution = Attribution(primary=None, line_subscriptions=[None] * len(lines))
        service, link, subscription = one_off.service, one_off.account_link, None
        default_currency = one_off.currency
    else:
        attribution = attribute_move(move, lines, order_of_sale_line or {})
        subscription = attribution.primary
        if subscription is None or subscription.mode != SubscriptionMode.LIVE:
            report.unmatched += 1  # not one of ours (or never billable): nothing to mirror
            return None
        service, link, default_currency = subscription.service, subscription.account_link, subscription.currency
    if move["move_type"] == "out_refund":
        with transaction.atomic():
            note = mirror_credit_note(move, lines, report, attribution=attribution, service=service, link=link,
                                      subscription=subscription, default_currency=default_currency)
            if one_off is not None and one_off.wallet_transaction_id is not None:
                # a reversed top-up invoice fails its purchase while still pending (paid credits stay)
                wallet_services.fail_purchase(transaction_id=one_off.wallet_transaction_id)
        return note
    status, payment_status = mirror_status(move), mirror_payment_status(move)
    currency = move["currency_id"][1] if isinstance(move.get("currency_id"), list) else default_currency
    digits = minor_unit_exponent(currency)  # ISO 4217: JPY 0, USD 2, KWD 3 (as Odoo rounds the currency)
    values = {
        "service": service, "customer": link.customer,
        "account_link": link,
        "invoice_type": one_off.invoice_type if one_off is not None else "",
        "subscription": subscription, "odoo_move_type": move["move_type"],
        "reversed_move_id": _m2o(move.get("reversed_entry_id")),
        "number": move["name"] if move.get("name") not in (None, False, "/") else "",
        "status": status, "payment_status": payment_status, "currency": currency,
        "issuing_date": _date(move.get("invoice_date")), "payment_due_date": _date(move.get("invoice_date_due")),
        "fees_amount": decimal_from_odoo(move.get("amount_untaxed"), digits=digits),
        "taxes_amount": decimal_from_odoo(move.get("amount_tax"), digits=digits),
        "total_amount": decimal_from_odoo(move.get("amount_total"), digits=digits),
        "total_due_amount": decimal_from_odoo(move.get("amount_residual"), digits=digits),
        "odoo_write_date": _odoo_datetime(move.get("write_date")),
        "held_reason": attribution.held_reason,
    }
    with transaction.atomic():
        # joined, so comparing with `values` below loads no service/customer/subscription row by row
        invoice = (Invoice.objects.select_related("service", "customer", "subscription")
                   .select_for_update(of=("self",)).filter(odoo_move_id=move["id"]).first())
        if move.get("payment_state") == "reversed" and invoice is not None:
            values["payment_status"] = invoice.payment_status  # a reversal voids; it does not unpay
        if (invoice is not None and invoice.payment_status == InvoicePaymentStatus.FAILED
                and values["payment_status"] == InvoicePaymentStatus.PENDING):
            values["payment_status"] = InvoicePaymentStatus.FAILED  # until Odoo says paid (Lago keeps it too)
        before = None
        if invoice is None:
            # a one-off invoice keeps the lago_id POST /invoices answered
            own_id = {"id": one_off.pk} if one_off is not None else {}
            invoice = Invoice(odoo_move_id=move["id"], **own_id, **values)
            invoice.save()
            report.invoices_created += 1
        else:
            # a held invoice was never shown to its service: once it bills one account, it is new to it
            before = None if invoice.held_reason else (invoice.status, invoice.payment_status)
            unchanged = all(getattr(invoice, k) == v for k, v in values.items() if k != "odoo_write_date")
            if unchanged and invoice.lines.count() == len(lines):
                return invoice
            for key, value in values.items():
                setattr(invoice, key, value)
            invoice.save()
            report.invoices_updated += 1
        _mirror_lines(invoice, attribution.line_subscriptions, lines, digits, one_off=one_off)
        if one_off is not None and one_off.invoice_id != invoice.pk:
            one_off.invoice = invoice
            one_off.save(update_fields=["invoice"])
        if one_off is not None and one_off.wallet_transaction_id is not None:
            _settle_top_up(one_off.wallet_transaction_id, invoice)
        if invoice.held_reason:
            report.held += 1
            logger.warning("odoo pull: invoice %s held from the API: %s", invoice, invoice.held_reason)
            return invoice  # no webhook: any payload would carry another service's lines
        webhook_types = _events(before, invoice)
        if WebhookType.INVOICE_CREATED in webhook_types and portal_pdf is not None and not invoice.file_url:
            # Lago's invoice.generated (the PDF is available): Odoo renders it on demand behind the portal
            # link, so it is available once posted; the link (access token) is made once and kept
            invoice.file_url = portal_base_url() + portal_pdf(move)
            invoice.save(update_fields=["file_url", "updated_at"])
            webhook_types.insert(webhook_types.index(WebhookType.INVOICE_CREATED) + 1, WebhookType.INVOICE_GENERATED)
        if webhook_types:
            prefetch_related_objects([invoice], *render_prefetches())
            payload = render_invoice(invoice)
        for webhook_type in webhook_types:
            record_event(service=invoice.service, webhook_type=webhook_type, object_type="invoice", payload=payload)
            report.events += 1
    return invoice


def _settle_top_up(transaction_id: uuid.UUID, invoice: Invoice) -> None:
    """A paid top-up's credits settle when Odoo says its invoice is paid; a cancelled unpaid invoice fails
    it (in the mirror's transaction, once: the services act on pending transactions only)."""
    if invoice.payment_status == InvoicePaymentStatus.SUCCEEDED:
        wallet_services.settle_purchase(transaction_id=transaction_id)
    elif invoice.status == InvoiceStatus.VOIDED:
        wallet_services.fail_purchase(transaction_id=transaction_id)


# Lago's "created" event of each invoice type (lago-api: one-off invoices and paid credits have their own).
CREATED_EVENT: dict[str, WebhookType] = {OneOffInvoiceType.ONE_OFF: WebhookType.INVOICE_ONE_OFF_CREATED,
                                         OneOffInvoiceType.CREDIT: WebhookType.INVOICE_PAID_CREDIT_ADDED}


def _events(before: tuple[str, str] | None, invoice: Invoice) -> list[str]:
    if invoice.odoo_move_type != "out_invoice":
        return []  # refunds are mirrored; apps hear about them as the original invoice being voided
    was_status, was_payment = before or (InvoiceStatus.DRAFT, InvoicePaymentStatus.PENDING)
    events: list[str] = []
    announced = before is not None and was_status != InvoiceStatus.DRAFT
    if before is None and invoice.status == InvoiceStatus.DRAFT:
        events.append(WebhookType.INVOICE_DRAFTED)  # Lago: a draft invoice was created
    if invoice.status != InvoiceStatus.DRAFT and not announced:
        events.append(CREATED_EVENT.get(invoice.invoice_type, WebhookType.INVOICE_CREATED))
    if invoice.status != InvoiceStatus.DRAFT and invoice.payment_status != was_payment:
        events.append(WebhookType.INVOICE_PAYMENT_STATUS_UPDATED)
    if invoice.status == InvoiceStatus.VOIDED and was_status != InvoiceStatus.VOIDED:
        events.append(WebhookType.INVOICE_VOIDED)
    return events


def _line_values(line_subscriptions: Sequence[Subscription | None], lines: list[dict],
                 digits: int) -> tuple[list[dict[str, Any]], dict[tuple[uuid.UUID | None, int | None], RatedUsage]]:
    """The mirror's values of each product line (invoice line or credit note item), and the usage rows found."""
    subscriptions = {sub.pk: sub for sub in line_subscriptions if sub is not None}
    sale_line_ids = {i for line in lines for i in (line.get("sale_line_ids") or [])}
    usages: dict[tuple[uuid.UUID | None, int | None], RatedUsage] = {
        (u.subscription_id, u.odoo_line_id): u for u in RatedUsage.objects.filter(
            subscription__in=list(subscriptions), odoo_line_id__in=sale_line_ids).select_related("charge")
    } if sale_line_ids else {}
    charges: dict[tuple[uuid.UUID | None, int | None], Charge] = {
        (sub.pk, c.odoo_product_id): c for sub in subscriptions.values() for c in sub.plan.charges.all()
        if c.odoo_product_id}
    rows = []
    for line, subscription in zip(lines, line_subscriptions):
        sub_id = subscription.pk if subscription is not None else None
        usage = next((usages[(sub_id, i)] for i in (line.get("sale_line_ids") or []) if (sub_id, i) in usages),
                     None)
        product = _m2o(line.get("product_id"))
        amount = decimal_from_odoo(line.get("price_subtotal"), digits=digits)
        total = decimal_from_odoo(line.get("price_total"), digits=digits)
        rows.append(dict(
            odoo_line_id=line["id"], name=(line.get("name") or "")[:512],
            quantity=Decimal(str(line.get("quantity") or 0)), unit_amount=Decimal(str(line.get("price_unit") or 0)),
            amount=amount, total_amount=total,
            subscription=subscription, charge=usage.charge if usage else charges.get((sub_id, product)),
            rated_usage=usage, taxes=line_taxes(line, total - amount, digits)))
    return rows, usages


def _mirror_lines(invoice: Invoice, line_subscriptions: Sequence[Subscription | None], lines: list[dict],
                  digits: int, *, one_off: OneOffInvoice | None = None) -> None:
    """The invoice's lines, each linked to what it bills: rated usage, a plan fee (base fee, credit,
    commitment true-up), a one-off fee, prepaid credits or a coupon discount."""
    rows, usages = _line_values(line_subscriptions, lines, digits)
    sale_line_ids = {i for line in lines for i in (line.get("sale_line_ids") or [])}
    subscription_ids = [sub.pk for sub in line_subscriptions if sub is not None]
    fees: dict[tuple[uuid.UUID | None, int | None], PlanFee] = {
        (f.subscription_id, f.odoo_line_id): f for f in PlanFee.objects.filter(
            subscription__in=subscription_ids, odoo_line_id__in=sale_line_ids)
    } if sale_line_ids else {}
    credit_lines = set(OdooSyncState.objects.filter(kind=SyncKind.WALLET_CREDIT, odoo_id__in=sale_line_ids)
                       .values_list("odoo_id", flat=True)) if sale_line_ids else set()
    discounts = discounts_of_lines(sorted(sale_line_ids))
    # a one-off move's lines are its OneOffInvoiceLines, in order (Odoo keeps the lines' sequence)
    one_off_lines = list(one_off.lines.all()) if one_off is not None else []
    if len(one_off_lines) != len(lines):
        one_off_lines = []
    for n, (row, line, subscription) in enumerate(zip(rows, lines, line_subscriptions)):
        sub_id = subscription.pk if subscription is not None else None
        sale_lines = line.get("sale_line_ids") or []
        row["plan_fee"] = None if row["rated_usage"] is not None else next(
            (fees[(sub_id, i)] for i in sale_lines if (sub_id, i) in fees), None)
        row["one_off_line"] = one_off_lines[n] if one_off_lines else None
        row["prepaid_credit"] = any(i in credit_lines for i in sale_lines)
        row["coupon_discount"] = next((discounts[i] for i in sale_lines if i in discounts), None)
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create([InvoiceLine(invoice=invoice, **row) for row in rows])
    if usages:
        # invoiced in Odoo: these lines are frozen there, the push never rewrites them
        OdooSyncState.objects.filter(kind=SyncKind.USAGE, object_id__in=[str(u.pk) for u in usages.values()]
                                     ).update(frozen=True)


def credit_note_status(move: dict) -> str:
    if move["state"] == "cancel":
        return CreditNoteStatus.VOIDED
    return CreditNoteStatus.FINALIZED if move["state"] == "posted" else CreditNoteStatus.DRAFT


def mirror_credit_note(move: dict, lines: list[dict], report: PullReport, *, attribution: Attribution,
                       service: Service, link: AccountLink, subscription: Subscription | None,
                       default_currency: str, request: CreditNoteRequest | None = None) -> CreditNote:
    """An Odoo refund as Lago's credit note; ``credit_note.created`` once, when first seen posted (not held).

    Its amount is an ``offset`` of its invoice when that invoice was not paid (Odoo reconciles the two),
    else a ``credit`` of the customer whose ``balance`` is Odoo's residual of the credit note.
    """
    currency = move["currency_id"][1] if isinstance(move.get("currency_id"), list) else default_currency
    digits = minor_unit_exponent(currency)
    reversed_id = _m2o(move.get("reversed_entry_id"))
    original = Invoice.objects.filter(odoo_move_id=reversed_id).first() if reversed_id else None
    total = decimal_from_odoo(move.get("amount_total"), digits=digits)
    residual = decimal_from_odoo(move.get("amount_residual"), digits=digits)
    offset = original is not None and original.payment_status != InvoicePaymentStatus.SUCCEEDED
    status = credit_note_status(move)
    values: dict[str, Any] = {
        "service": service, "customer": link.customer,
        "account_link": link, "subscription": subscription, "invoice": original,
        "reversed_move_id": reversed_id,
        "number": move["name"] if move.get("name") not in (None, False, "/") else "",
        "reason": (move.get("ref") or "")[:512],
        "status": status,
        "currency": currency,
        "issuing_date": _date(move.get("invoice_date")),
        "fees_amount": decimal_from_odoo(move.get("amount_untaxed"), digits=digits),
        "taxes_amount": decimal_from_odoo(move.get("amount_tax"), digits=digits),
        "total_amount": total,
        "offset_amount": total if offset else Decimal(0),
        "credit_amount": Decimal(0) if offset else total,
        "balance_amount": Decimal(0) if offset or status == CreditNoteStatus.VOIDED else residual,
        "odoo_write_date": _odoo_datetime(move.get("write_date")),
        "held_reason": attribution.held_reason,
    }
    if request is not None:
        # Lago's split as asked (credit / refund / offset), and its description: Odoo's ref is our reference
        values.update(reason=request.description[:512], credit_amount=request.credit_amount,
                      offset_amount=request.offset_amount,
                      balance_amount=Decimal(0) if status == CreditNoteStatus.VOIDED else request.credit_amount)
    with transaction.atomic():
        note = (CreditNote.objects.select_related("service", "customer", "subscription", "invoice")
                .select_for_update(of=("self",)).filter(odoo_move_id=move["id"]).first())
        if note is None:
            own_id = {"id": request.pk} if request is not None else {}  # the lago_id POST /credit_notes answered
            note = CreditNote(odoo_move_id=move["id"], **own_id, **values)
            note.save()
            report.credit_notes_created += 1
        else:
            unchanged = all(getattr(note, k) == v for k, v in values.items() if k != "odoo_write_date")
            if unchanged and note.items.count() == len(lines):
                return note
            for key, value in values.items():
                setattr(note, key, value)
            note.save()
            report.credit_notes_updated += 1
        rows, _ = _line_values(attribution.line_subscriptions, lines, digits)
        if request is not None:
            _credited_fees(rows, request)
            if request.credit_note_id != note.pk:
                request.credit_note = note
                request.save(update_fields=["credit_note"])
        note.items.all().delete()
        CreditNoteItem.objects.bulk_create([CreditNoteItem(credit_note=note, **row) for row in rows])
        if note.held_reason:
            report.held += 1
            logger.warning("odoo pull: credit note %s held from the API: %s", note, note.held_reason)
            return note
        if note.status != CreditNoteStatus.DRAFT and note.announced_at is None:
            note.announced_at = timezone.now()
            note.save(update_fields=["announced_at", "updated_at"])
            prefetch_related_objects([note], *credit_note_prefetches())
            record_event(service=note.service, webhook_type=WebhookType.CREDIT_NOTE_CREATED,
                         object_type="credit_note", payload=render_credit_note(note))
            report.events += 1
    return note


def _credited_fees(rows: list[dict[str, Any]], request: CreditNoteRequest) -> None:
    """Each item of an API credit note is the fee it credits (in order: Odoo keeps the lines' sequence):
    its charge and rated usage, as the invoice line's."""
    items = [item for item in request.items.all() if item.amount != 0]
    if len(items) != len(rows):
        return
    originals = {line.odoo_line_id: line for line in InvoiceLine.objects.filter(
        invoice_id=request.invoice_id, odoo_line_id__in=[i.odoo_line_id for i in items])}
    for row, item in zip(rows, items):
        original = originals.get(item.odoo_line_id)
        if original is not None:
            row.update(charge_id=original.charge_id, rated_usage_id=original.rated_usage_id)
            row.pop("charge", None)
            row.pop("rated_usage", None)


TAX_RATES_TTL = dt.timedelta(hours=1)


def refresh_tax_rates(*, client: OdooClient, now: dt.datetime | None = None, batch: int = 200) -> int:
    """Cache the taxes Odoo puts on each live order's lines (``Subscription.odoo_tax_rates``) for
    ``current_usage``: per product, the sum of its line's percentage rates, the partner's fiscal position
    applied by Odoo; ``""`` is the recurring line's (the plan's product), used for a charge with no line yet.
    At most once per ``TAX_RATES_TTL`` per subscription, ``batch`` orders per pull (two calls)."""
    now = now or timezone.now()
    stale = list(Subscription.objects.filter(mode=SubscriptionMode.LIVE, odoo_sale_order_id__isnull=False)
                 .exclude(odoo_tax_rates_at__gte=now - TAX_RATES_TTL).order_by("odoo_tax_rates_at", "pk")[:batch])
    if not stale:
        return 0
    tax_field = client.fields.line_taxes
    lines = client.call("sale.order.line", "search_read",
                        [[["order_id", "in", sorted({s.odoo_sale_order_id for s in stale})],
                          ["display_type", "=", False]]],
                        {"fields": ["order_id", "product_id", "recurring_invoice", tax_field]})
    tax_ids = sorted({t for line in lines for t in (line.get(tax_field) or [])})
    taxes = {row["id"]: row for row in client.call("account.tax", "read", [tax_ids], {"fields": TAX_FIELDS})
             } if tax_ids else {}
    by_order: dict[int, dict[str, str]] = {}
    for line in lines:
        rate = sum((Decimal(str(taxes[t].get("amount") or 0)) for t in line.get(tax_field) or []
                    if t in taxes and taxes[t].get("amount_type", "percent") == "percent"), Decimal(0))
        rates = by_order.setdefault(_m2o(line.get("order_id")) or 0, {})
        rates[str(_m2o(line.get("product_id")) or "")] = str(rate.normalize())
        if line.get("recurring_invoice"):
            rates[""] = str(rate.normalize())
    for sub in stale:
        sub.odoo_tax_rates = by_order.get(sub.odoo_sale_order_id or 0, {})
        sub.odoo_tax_rates_at = now
    Subscription.objects.bulk_update(stale, ["odoo_tax_rates", "odoo_tax_rates_at"])
    return len(stale)


def pull_failed_transactions(*, client: OdooClient, report: PullReport) -> None:
    """Lago's ``invoice.payment_failure``: Odoo ``payment.transaction`` rows in ``error`` (a Stripe charge
    refused, from the portal or a payment link) of our invoices, read by their own ``write_date`` cursor
    (a transaction changing state does not write its invoice). Once per transaction; the invoice's
    ``payment_status`` becomes ``failed`` (``invoice.payment_status_updated``) until Odoo says it is paid."""
    cursor, _ = OdooPullCursor.objects.get_or_create(name=TRANSACTION_CURSOR_NAME)
    newest = cursor.write_date
    transactions = client.call("payment.transaction", "search_read",
                               [[["state", "=", "error"], ["write_date", ">=", cursor.write_date],
                                 ["invoice_ids", "!=", False]]],
                               {"fields": TRANSACTION_FIELDS, "order": "write_date asc, id asc"})
    for tx in transactions:
        newest = max(newest, tx.get("write_date") or newest)
        for invoice_id in Invoice.objects.filter(odoo_move_id__in=tx.get("invoice_ids") or [], held_reason="",
                                                 status=InvoiceStatus.FINALIZED).values_list("pk", flat=True):
            _announce_payment_failure(invoice_id, tx, report)
    cursor.write_date = newest
    cursor.last_run_at = timezone.now()
    cursor.save(update_fields=["write_date", "last_run_at", "updated_at"])


def _announce_payment_failure(invoice_id: uuid.UUID, tx: dict, report: PullReport) -> None:
    with transaction.atomic():
        invoice = (Invoice.objects.select_related("service", "customer", "subscription", "account_link")
                   .select_for_update(of=("self",)).get(pk=invoice_id))
        if invoice.payment_status == InvoicePaymentStatus.SUCCEEDED or (
                invoice.last_failed_transaction_id is not None and invoice.last_failed_transaction_id >= tx["id"]):
            return
        invoice.last_failed_transaction_id = tx["id"]
        changed = invoice.payment_status != InvoicePaymentStatus.FAILED
        invoice.payment_status = InvoicePaymentStatus.FAILED
        invoice.save(update_fields=["last_failed_transaction_id", "payment_status", "updated_at"])
        link = invoice.account_link
        provider = tx.get("provider_code") or None
        record_event(service=invoice.service, webhook_type=WebhookType.INVOICE_PAYMENT_FAILURE,
                     object_type="payment_provider_invoice_payment_error", payload={
                         "lago_invoice_id": str(invoice.pk),
                         "lago_customer_id": str(link.pk) if link else None,
                         "external_customer_id": link.external_id if link else None,
                         "provider_customer_id": link.stripe_customer_id or None if link else None,
                         "payment_provider": provider, "payment_provider_code": provider,
                         "provider_error": {"message": tx.get("state_message") or "",
                                            "error_code": tx.get("reference") or None},
                     })
        report.payment_failures += 1
        report.events += 1
        if changed:
            prefetch_related_objects([invoice], *render_prefetches())
            record_event(service=invoice.service, webhook_type=WebhookType.INVOICE_PAYMENT_STATUS_UPDATED,
                         object_type="invoice", payload=render_invoice(invoice))
            report.events += 1


def announce_overdue_invoices(*, now: dt.datetime | None = None) -> int:
    """Lago's ``invoice.payment_overdue``: once per finalized customer invoice still unpaid
    the day after its ``payment_due_date`` (UTC), as Lago's daily job flags it. Run after
    each pull (the mirror's payment state is Odoo's)."""
    now = now or timezone.now()
    today = now.astimezone(dt.timezone.utc).date()
    due = Invoice.objects.filter(
        status=InvoiceStatus.FINALIZED, odoo_move_type="out_invoice", payment_due_date__lt=today,
        payment_overdue_announced_at__isnull=True, held_reason="",
    ).exclude(payment_status=InvoicePaymentStatus.SUCCEEDED)
    announced = 0
    for invoice_id in due.values_list("id", flat=True):
        with transaction.atomic():
            invoice = (due.select_related("service", "customer", "subscription").select_for_update(of=("self",))
                       .filter(pk=invoice_id).first())
            if invoice is None:
                continue
            invoice.payment_overdue_announced_at = now
            invoice.save(update_fields=["payment_overdue_announced_at", "updated_at"])
            prefetch_related_objects([invoice], *render_prefetches())
            record_event(service=invoice.service, webhook_type=WebhookType.INVOICE_PAYMENT_OVERDUE,
                         object_type="invoice", payload=render_invoice(invoice))
            announced += 1
    return announced
