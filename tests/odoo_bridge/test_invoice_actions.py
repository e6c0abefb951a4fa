"""Lago's invoice actions realised in Odoo (public methods only), driven by the official lago-python-client
against a live server and the fake Odoo: download (portal PDF link), payment_url, void, finalize, refresh,
and the customer's portal_url."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.invoice import InvoiceResponse

from odoo_bridge.models import Invoice
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from odoo_bridge.testing.invoicing import create_invoices
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)
BILLING_DAY = dt.date(2026, 12, 1)


def event_types():
    return [e.webhook_type for e in WebhookEvent.objects.order_by("created_at")]


def payload(webhook_type):
    [event] = [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type=webhook_type)]
    return event


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
    return sub, Invoice.objects.get(odoo_move_id=move_id)


def lago_error(call) -> LagoApiError:
    with pytest.raises(LagoApiError) as raised:
        call()
    return raised.value


def test_download_gives_the_odoo_portal_pdf_link_once(fake_odoo, invoiced, lago, other_lago):
    sub, invoice = invoiced
    invoice.refresh_from_db()
    assert invoice.file_url  # made by the pull when it saw the invoice posted (invoice.generated)
    Invoice.objects.filter(pk=invoice.pk).update(file_url="")  # as an invoice mirrored before #14
    downloaded = lago.invoices.download(str(invoice.pk))
    assert isinstance(downloaded, InvoiceResponse)
    token = fake_odoo.store.records["account.move"][invoice.odoo_move_id]["access_token"]
    assert token and downloaded.file_url == (
        f"{fake_odoo.url}/my/invoices/{invoice.odoo_move_id}?access_token={token}&report_type=pdf&download=true")
    calls = fake_odoo.call_count(model="account.move", method="get_portal_url")
    # kept: the next download and every read give the same link without asking Odoo again
    assert lago.invoices.download(str(invoice.pk)).file_url == downloaded.file_url
    assert lago.invoices.find(str(invoice.pk)).file_url == downloaded.file_url
    assert fake_odoo.call_count(model="account.move", method="get_portal_url") == calls
    # the payment page is the invoice's portal page, with the same token
    url = lago.invoices.payment_url(str(invoice.pk))
    assert url == f"{fake_odoo.url}/my/invoices/{invoice.odoo_move_id}?access_token={token}"
    # scoped to the calling service
    missing = lago_error(lambda: other_lago.invoices.download(str(invoice.pk)))
    assert missing.status_code == 404 and missing.response["code"] == "invoice_not_found"
    assert lago_error(lambda: other_lago.invoices.payment_url(str(invoice.pk))).status_code == 404
    # a paid invoice has nothing to pay
    fake_odoo.register_payment(invoice.odoo_move_id)
    pull_invoices()
    paid = lago_error(lambda: lago.invoices.payment_url(str(invoice.pk)))
    assert paid.status_code == 422 and paid.response["error_details"] == {"base": ["invalid_status"]}


def test_void_cancels_the_invoice_in_odoo(fake_odoo, invoiced, lago, other_lago):
    sub, invoice = invoiced
    assert lago_error(lambda: other_lago.invoices.void(str(invoice.pk))).status_code == 404
    assert fake_odoo.store.records["account.move"][invoice.odoo_move_id]["state"] == "posted"
    voided = lago.invoices.void(str(invoice.pk))
    assert voided.status == "voided" and voided.voided_at is not None
    assert fake_odoo.store.records["account.move"][invoice.odoo_move_id]["state"] == "cancel"
    assert payload("invoice.voided")["invoice"]["lago_id"] == str(invoice.pk)
    # the pull has nothing more to say about it
    pull_invoices()
    assert event_types().count("invoice.voided") == 1
    again = lago_error(lambda: lago.invoices.void(str(invoice.pk)))
    assert again.status_code == 405 and again.response["code"] == "not_voidable"


def test_void_is_refused_for_paid_and_locked_invoices(fake_odoo, catalog, invoiced, lago):
    sub, invoice = invoiced
    # a journal in strict mode: Odoo refuses to reset the entry to draft, so to cancel it
    fake_odoo.store.write("account.move", [invoice.odoo_move_id], {"inalterable_hash": "$1$abc"})
    locked = lago_error(lambda: lago.invoices.void(str(invoice.pk)))
    assert locked.status_code == 405 and locked.response["code"] == "not_voidable"
    assert "strict mode" in locked.response["error_details"]["odoo"]
    assert lago.invoices.find(str(invoice.pk)).status == "finalized"
    fake_odoo.store.write("account.move", [invoice.odoo_move_id], {"inalterable_hash": False})
    fake_odoo.register_payment(invoice.odoo_move_id)
    pull_invoices()
    paid = lago_error(lambda: lago.invoices.void(str(invoice.pk)))
    assert paid.status_code == 405 and paid.response["code"] == "not_voidable"
    assert fake_odoo.store.records["account.move"][invoice.odoo_move_id]["state"] == "posted"


def test_finalize_posts_a_draft_and_refresh_mirrors_odoo_now(fake_odoo, catalog, lago):
    sub = catalog.subscription()
    catalog.fee(sub, amount="49.000000")
    push_cycle()
    sub.refresh_from_db()
    # a person runs Odoo's invoicing wizard and leaves the invoice in draft (sale `_create_invoices`)
    with fake_odoo.store.lock:
        [move_id] = create_invoices(fake_odoo.store, [sub.odoo_sale_order_id])
    pull_invoices()
    draft = Invoice.objects.get(odoo_move_id=move_id)
    assert draft.status == "draft" and event_types() == ["invoice.drafted"]
    assert lago_error(lambda: lago.invoices.download(str(draft.pk))).response["code"] == "is_draft"
    assert lago_error(lambda: lago.invoices.payment_url(str(draft.pk))).status_code == 422

    finalized = lago.invoices.finalize(str(draft.pk))
    assert finalized.status == "finalized" and finalized.number.startswith("INV/")
    assert fake_odoo.store.records["account.move"][move_id]["state"] == "posted"
    assert payload("invoice.created")["invoice"]["number"] == finalized.number
    assert lago.invoices.finalize(str(draft.pk)).number == finalized.number  # as it is, nothing posted twice

    fake_odoo.register_payment(move_id)
    refreshed = lago.invoices.refresh(str(draft.pk))  # no pull ran: the action read Odoo itself
    assert refreshed.payment_status == "succeeded" and refreshed.total_due_amount_cents == 0
    assert event_types()[-1] == "invoice.payment_status_updated"


def test_odoo_down_is_a_503_to_retry(fake_odoo, invoiced, lago):
    sub, invoice = invoiced
    fake_odoo.go_down()
    try:
        down = lago_error(lambda: lago.invoices.void(str(invoice.pk)))
    finally:
        fake_odoo.come_up()
    assert down.status_code == 503 and down.response["code"] == "odoo_unavailable"
    assert lago.invoices.find(str(invoice.pk)).status == "finalized"
    assert lago.invoices.void(str(invoice.pk)).status == "voided"


def test_customer_portal_url_is_odoos_customer_portal(fake_odoo, invoiced, lago, other_lago, settings):
    sub, _ = invoiced
    external_id = sub.account_link.external_id
    assert lago.customers.portal_url(external_id) == f"{fake_odoo.url}/my/invoices"
    settings.ODOO_PORTAL_URL = "https://portal.example.test/"
    assert lago.customers.portal_url(external_id) == "https://portal.example.test/my/invoices"
    missing = lago_error(lambda: other_lago.customers.portal_url(external_id))
    assert missing.status_code == 404 and missing.response["code"] == "customer_not_found"
