"""invoice.generated (the Odoo portal PDF is available once the pull sees the invoice posted) and
invoice.payment_failure (an Odoo payment.transaction in error, e.g. a Stripe decline), in Lago's shapes."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from lago_python_client.models.invoice import InvoiceResponse

from odoo_bridge.models import Invoice, OdooPullCursor
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db
BILLING_DAY = dt.date(2026, 12, 1)


def bodies(webhook_type):
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type=webhook_type)
            .order_by("created_at")]


@pytest.fixture
def invoiced(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.fee(sub, amount="49.000000")
    push_cycle()
    [move_id] = fake_odoo.run_invoicing_cron(today=BILLING_DAY)
    return sub, move_id


def test_invoice_generated_carries_the_portal_pdf_link(fake_odoo, invoiced, api_client):
    sub, move_id = invoiced
    pull_invoices()
    [generated] = bodies("invoice.generated")
    token = fake_odoo.store.records["account.move"][move_id]["access_token"]
    assert generated["object_type"] == "invoice" and generated["invoice"]["file_url"] == (
        f"{fake_odoo.url}/my/invoices/{move_id}?access_token={token}&report_type=pdf&download=true")
    InvoiceResponse.parse_obj(generated["invoice"])
    # once, and the same link for the download action
    pull_invoices()
    assert len(bodies("invoice.generated")) == 1
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    downloaded = api_client.post(f"/api/v1/invoices/{invoice.pk}/download").json()["invoice"]
    assert downloaded["file_url"] == generated["invoice"]["file_url"]


def test_a_declined_charge_is_a_payment_failure_once_then_paid(fake_odoo, invoiced, api_client):
    sub, move_id = invoiced
    pull_invoices()
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    tx = fake_odoo.fail_payment(move_id, "Your card was declined.")
    report = pull_invoices()
    assert report.payment_failures == 1
    [failure] = bodies("invoice.payment_failure")
    assert failure["object_type"] == "payment_provider_invoice_payment_error"
    assert failure["payment_provider_invoice_payment_error"] == {
        "lago_invoice_id": str(invoice.pk), "lago_customer_id": str(sub.account_link.pk),
        "external_customer_id": sub.account_link.external_id, "provider_customer_id": None,
        "payment_provider": "stripe", "payment_provider_code": "stripe",
        "provider_error": {"message": "Your card was declined.",
                           "error_code": fake_odoo.store.records["payment.transaction"][tx]["reference"]}}
    [updated] = bodies("invoice.payment_status_updated")
    assert updated["invoice"]["payment_status"] == "failed"
    assert api_client.get(f"/api/v1/invoices/{invoice.pk}").json()["invoice"]["payment_status"] == "failed"
    assert OdooPullCursor.objects.get(name="payment.transaction").write_date > "2026-01-01"
    # the same transaction is never announced twice; a change of the invoice keeps it failed
    fake_odoo.store.write("account.move", [move_id], {"ref": "reminder sent"})
    assert pull_invoices().payment_failures == 0
    assert Invoice.objects.get(pk=invoice.pk).payment_status == "failed"
    # a second decline is a second failure (no second status change)
    fake_odoo.fail_payment(move_id, "Insufficient funds.")
    assert pull_invoices().payment_failures == 1
    assert [b["payment_provider_invoice_payment_error"]["provider_error"]["message"]
            for b in bodies("invoice.payment_failure")] == ["Your card was declined.", "Insufficient funds."]
    assert len(bodies("invoice.payment_status_updated")) == 1
    # then the customer pays: succeeded
    fake_odoo.register_payment(move_id)
    pull_invoices()
    assert [b["invoice"]["payment_status"] for b in bodies("invoice.payment_status_updated")] == [
        "failed", "succeeded"]


def test_failures_of_other_partners_invoices_are_not_announced(fake_odoo, invoiced):
    partner = fake_odoo.store.create("res.partner", [{"name": "Not ours"}])[0]
    foreign = fake_odoo.store.create("account.move", [{"move_type": "out_invoice", "partner_id": partner,
                                                       "invoice_line_ids": [[0, 0, {"name": "x", "price_unit": 5.0}]]}])[0]
    fake_odoo.store.records["account.move"][foreign]["name"] = "INV/X"
    fake_odoo.fail_payment(foreign)
    report = pull_invoices()
    assert report.payment_failures == 0 and bodies("invoice.payment_failure") == []
    assert not report.aborted and OdooPullCursor.objects.get(name="payment.transaction").write_date > "2026-01-01"


def test_an_invoice_sent_with_its_token_costs_no_portal_call(fake_odoo, invoiced):
    sub, move_id = invoiced
    fake_odoo.store.write("account.move", [move_id], {"access_token": "tok-1"})  # mailed by Odoo: token made
    fake_odoo.reset_counters()
    pull_invoices()
    [generated] = bodies("invoice.generated")
    assert generated["invoice"]["file_url"] == (
        f"{fake_odoo.url}/my/invoices/{move_id}?access_token=tok-1&report_type=pdf&download=true")
    assert fake_odoo.call_count(method="get_portal_url") == 0
