"""Odoo's taxes on the mirrored invoices and credit notes: Lago's `applied_taxes` and the fees' tax fields,
from the lines' `tax_ids` (Ontario's fiscal position maps the products' GST 5% to HST 13%)."""

from __future__ import annotations

import datetime as dt

import pytest
from lago_python_client.models.credit_note import CreditNoteResponse
from lago_python_client.models.invoice import InvoiceResponse

from odoo_bridge import mapping
from odoo_bridge.models import Invoice
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle

pytestmark = pytest.mark.django_db


def test_applied_taxes_come_from_odoos_tax_lines(fake_odoo, catalog, api_client):
    store = fake_odoo.store
    gst = store.xmlid_id("account", "1_gst_sale_tax_5")
    for code, name, recurring in ((mapping.charge_product_code(catalog.api_charge), "API calls", False),
                                  (mapping.plan_product_code(catalog.plan), "Pro", True),
                                  (mapping.fee_product_code(catalog.plan), "Pro", False)):
        store.create("product.product", [{"name": name, "default_code": code, "type": "service",
                                          "recurring_invoice": recurring, "taxes_id": [[6, 0, [gst]]]}])
    sub = catalog.subscription()  # an Ontario account
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.fee(sub, amount="49.000000")
    push_cycle()
    [move_id] = fake_odoo.run_invoicing_cron(today=dt.date(2026, 12, 1))
    pull_invoices()
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    body = api_client.get(f"/api/v1/invoices/{invoice.pk}").json()["invoice"]
    parsed = InvoiceResponse.parse_obj(body)
    hst = store.xmlid_id("account", "1_hst_sale_tax_13")
    # 52.00 untaxed, HST 13 % = 6.76 (3.00 -> 0.39, 49.00 -> 6.37)
    assert (body["fees_amount_cents"], body["taxes_amount_cents"], body["total_amount_cents"]) == (5200, 676, 5876)
    [applied] = parsed.applied_taxes.__root__
    assert (applied.tax_name, applied.tax_rate, applied.amount_cents, applied.fees_amount_cents) == (
        "13% HST", 13.0, 676, 5200)
    assert applied.tax_code == f"odoo_tax_{hst}" and applied.lago_invoice_id == str(invoice.pk)
    usage_fee = next(f for f in body["fees"] if f["item"]["type"] == "charge")
    assert (usage_fee["taxes_amount_cents"], usage_fee["taxes_rate"]) == (39, 13.0)
    assert [(t["tax_name"], t["amount_cents"]) for t in usage_fee["applied_taxes"]] == [("13% HST", 39)]

    refund_id = fake_odoo.reverse_invoice(move_id)
    pull_invoices()
    [note] = api_client.get("/api/v1/credit_notes").json()["credit_notes"]
    parsed_note = CreditNoteResponse.parse_obj(note)
    assert (note["taxes_amount_cents"], note["taxes_rate"], note["total_amount_cents"]) == (676, 13.0, 5876)
    [note_tax] = parsed_note.applied_taxes.__root__
    assert (note_tax.amount_cents, note_tax.base_amount_cents, note_tax.tax_rate) == (676, 5200, 13.0)
    assert refund_id != move_id


def test_a_line_with_two_taxes_shares_odoos_tax_amount_by_rate():
    from decimal import Decimal

    from odoo_bridge.pull import line_taxes

    line = {"_taxes": [{"id": 1, "name": "5% GST", "amount": 5.0, "amount_type": "percent"},
                       {"id": 2, "name": "7% PST", "amount": 7.0, "amount_type": "percent"}]}
    shares = line_taxes(line, Decimal("1.21"), 2)  # Odoo charged 1.21 on 10.08
    assert [(t["name"], t["rate"], t["amount"]) for t in shares] == [("5% GST", "5", "0.50"), ("7% PST", "7", "0.71")]
    assert line_taxes({"_taxes": []}, Decimal(0), 2) == []


@pytest.mark.django_db(transaction=True)
def test_current_usage_applies_the_partners_odoo_taxes(fake_odoo, catalog, live_server, api_key, api_client):
    from django.utils import timezone
    from lago_python_client.client import Client

    from metering.models import Subscription

    store = fake_odoo.store
    gst = store.xmlid_id("account", "1_gst_sale_tax_5")
    for code, name, recurring in ((mapping.charge_product_code(catalog.api_charge), "API calls", False),
                                  (mapping.plan_product_code(catalog.plan), "Pro", True),
                                  (mapping.fee_product_code(catalog.plan), "Pro", False)):
        store.create("product.product", [{"name": name, "default_code": code, "type": "service",
                                          "recurring_invoice": recurring, "taxes_id": [[6, 0, [gst]]]}])
    sub = catalog.subscription()  # an Ontario account: GST is mapped to HST 13 %
    now = timezone.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    Subscription.objects.filter(pk=sub.pk).update(started_at=start, subscription_at=start, billing_anchor=start,
                                                  current_period_start=start, current_period_end=end)
    push_cycle()
    lago = Client(api_key=api_key, api_url=live_server.url)
    posted = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "t1", "external_subscription_id": sub.external_id, "code": "api_calls",
        "timestamp": now.timestamp(), "properties": {"calls": 150}}}, format="json")
    assert posted.status_code == 200, posted.json()
    external = sub.account_link.external_id
    # before the pull has cached Odoo's rates: no tax
    assert lago.customers.current_usage(external, sub.external_id).taxes_amount_cents == 0
    report = pull_invoices()
    assert report.tax_rates_refreshed == 1
    hst_rates = Subscription.objects.get(pk=sub.pk).odoo_tax_rates
    assert set(hst_rates.values()) == {"13"}
    usage = lago.customers.current_usage(external, sub.external_id)
    # 150 calls x 0.02 = 3.00, HST 13 % = 0.39
    assert (usage.amount_cents, usage.taxes_amount_cents, usage.total_amount_cents) == (300, 39, 339)
    untaxed = api_client.get(f"/api/v1/customers/{external}/current_usage",
                             {"external_subscription_id": sub.external_id, "apply_taxes": "false"}).json()
    assert untaxed["customer_usage"]["taxes_amount_cents"] == 0
    assert untaxed["customer_usage"]["total_amount_cents"] == 300
    bad = api_client.get(f"/api/v1/customers/{external}/current_usage",
                         {"external_subscription_id": sub.external_id, "apply_taxes": "maybe"})
    assert bad.status_code == 422
    # cached for an hour: the next pull asks Odoo nothing about it
    assert pull_invoices().tax_rates_refreshed == 0
