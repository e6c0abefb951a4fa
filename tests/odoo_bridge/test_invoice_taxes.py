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
