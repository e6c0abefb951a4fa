"""Odoo refunds are Lago credit notes: mirrored apart from invoices, served by /credit_notes, announced by
``credit_note.created``. The official lago-python-client reads them from a live server."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.apps import apps
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.credit_note import CreditNoteResponse

from odoo_bridge.models import CreditNote, Invoice, InvoiceLine
from odoo_bridge.pull import pull_invoices
from odoo_bridge.selectors import billed_totals
from odoo_bridge.sync import push_cycle
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)
BILLING_DAY = dt.date(2026, 12, 1)


def events(webhook_type):
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type=webhook_type)
            .order_by("created_at")]


@pytest.fixture
def lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


@pytest.fixture
def other_lago(live_server, other_api_key) -> Client:
    return Client(api_key=other_api_key, api_url=live_server.url)


@pytest.fixture
def invoiced(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.fee(sub, amount="49.000000")
    push_cycle()
    [move_id] = fake_odoo.run_invoicing_cron(today=BILLING_DAY)
    pull_invoices()
    return sub, move_id


def test_reversal_of_an_unpaid_invoice_is_an_offset_credit_note(fake_odoo, invoiced, lago, other_lago):
    sub, move_id = invoiced
    refund_id = fake_odoo.reverse_invoice(move_id)
    report = pull_invoices()
    assert (report.credit_notes_created, report.invoices_created) == (1, 0)
    note = CreditNote.objects.get(odoo_move_id=refund_id)
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert note.invoice == invoice and not Invoice.objects.filter(odoo_move_id=refund_id).exists()

    page = lago.credit_notes.find_all()
    [listed] = page["credit_notes"]
    assert isinstance(listed, CreditNoteResponse) and page["meta"]["total_count"] == 1
    assert listed.lago_id == str(note.pk) and listed.lago_invoice_id == str(invoice.pk)
    assert listed.invoice_number == invoice.number and listed.number.startswith("RINV/")
    # 49.00 + 3.00 not paid: Odoo reconciles the credit note against its invoice, Lago's offset
    assert (listed.total_amount_cents, listed.offset_amount_cents, listed.credit_amount_cents) == (5200, 5200, 0)
    assert listed.credit_status is None and listed.balance_amount_cents == 0
    assert listed.customer.external_id == sub.account_link.external_id
    items = listed.items.__root__
    assert sorted(i.amount_cents for i in items) == [0, 300, 4900]  # the recurring line bills 0
    usage_item = next(i for i in items if i.amount_cents == 300)
    assert usage_item.fee.item.code == "api_calls" and usage_item.fee.external_subscription_id == sub.external_id

    found = lago.credit_notes.find(str(note.pk))
    assert found.lago_id == str(note.pk) and found.reason == "other"
    assert lago.invoices.find(str(invoice.pk)).status == "voided"
    # the webhook carries the same object, once however often we pull
    pull_invoices()
    [event] = events("credit_note.created")
    assert event["object_type"] == "credit_note" and event["credit_note"]["lago_id"] == str(note.pk)
    CreditNoteResponse.parse_obj(event["credit_note"])

    # filters and scoping
    assert lago.credit_notes.find_all({"external_customer_id": sub.account_link.external_id})["meta"][
        "total_count"] == 1
    assert lago.credit_notes.find_all({"external_customer_id": "nobody"})["credit_notes"] == []
    assert lago.credit_notes.find_all({"invoice_number": invoice.number})["meta"]["total_count"] == 1
    assert lago.credit_notes.find_all({"issuing_date_to": "2000-01-01"})["credit_notes"] == []
    with pytest.raises(LagoApiError) as bad:
        lago.credit_notes.find_all({"issuing_date_from": "yesterday"})
    assert bad.value.status_code == 422
    assert other_lago.credit_notes.find_all()["credit_notes"] == []
    with pytest.raises(LagoApiError) as missing:
        other_lago.credit_notes.find(str(note.pk))
    assert missing.value.status_code == 404 and missing.value.response["code"] == "credit_note_not_found"
    # refunds are not invoices: none is listed as an invoice of type credit_note
    assert lago.invoices.find_all({"invoice_type": "credit_note"})["invoices"] == []
    assert [i.lago_id for i in lago.invoices.find_all()["invoices"]] == [str(invoice.pk)]
    # net of the credit note, nothing is billed any more
    assert billed_totals(sub).untaxed == 0


def test_reversal_of_a_paid_invoice_is_a_credit_of_the_customer(fake_odoo, invoiced, lago):
    sub, move_id = invoiced
    fake_odoo.register_payment(move_id)
    pull_invoices()
    refund_id = fake_odoo.reverse_invoice(move_id)
    pull_invoices()
    note = lago.credit_notes.find(str(CreditNote.objects.get(odoo_move_id=refund_id).pk))
    assert (note.credit_amount_cents, note.offset_amount_cents) == (5200, 0)
    # the fake reconciles the credit note at once (residual 0): the credit is used up
    assert note.credit_status == "consumed" and note.balance_amount_cents == 0


def test_a_draft_credit_note_is_neither_listed_nor_announced(fake_odoo, invoiced, lago):
    sub, move_id = invoiced
    move = fake_odoo.store.records["account.move"][move_id]
    fake_odoo.store.create("account.move", [{
        "move_type": "out_refund", "partner_id": move["partner_id"], "reversed_entry_id": move_id,
        "invoice_line_ids": [[0, 0, {"name": "goodwill", "quantity": 1, "price_unit": 5.0,
                                     "subscription_id": sub.odoo_sale_order_id}]]}])
    assert pull_invoices().credit_notes_created == 1
    assert lago.credit_notes.find_all()["credit_notes"] == [] and events("credit_note.created") == []


def test_the_migration_moves_refunds_mirrored_as_invoices_into_credit_notes(service, catalog):
    """0010: rows of the old mirror (refunds stored as Invoice rows) become credit notes and leave the
    invoices; the refunded invoice's lines stay."""
    from importlib import import_module

    migration = import_module("odoo_bridge.migrations.0010_credit_notes")
    sub = catalog.subscription()
    common = dict(service=service, customer=sub.account_link.customer, account_link=sub.account_link,
                  subscription=sub, currency="CAD")
    original = Invoice.objects.create(odoo_move_id=10, number="INV/1", status="voided", total_amount=Decimal("52"),
                                      **common)
    InvoiceLine.objects.create(invoice=original, name="Pro", amount=Decimal("52"), subscription=sub)
    refund = Invoice.objects.create(odoo_move_id=11, odoo_move_type="out_refund", reversed_move_id=10,
                                    number="RINV/1", status="finalized", fees_amount=Decimal("52"),
                                    total_amount=Decimal("52"), **common)
    InvoiceLine.objects.create(invoice=refund, name="Pro", amount=Decimal("52"), subscription=sub,
                               charge=catalog.api_charge)
    migration.refunds_to_credit_notes(apps, None)
    assert list(Invoice.objects.values_list("odoo_move_id", flat=True)) == [10]
    note = CreditNote.objects.get()
    assert (note.odoo_move_id, note.invoice, note.number, note.status) == (11, original, "RINV/1", "finalized")
    assert note.offset_amount == Decimal("52") and note.announced_at is not None
    [item] = note.items.all()
    assert (item.amount, item.charge, item.subscription) == (Decimal("52"), catalog.api_charge, sub)
    assert InvoiceLine.objects.filter(invoice=original).count() == 1
