"""A plan's minimum commitment reaches Odoo as a one-off true-up line, billed once (issue #12).

Driven through the HTTP API, the rating task and the push to the fake Odoo over JSON-RPC;
Odoo's invoicing cron bills the window's close.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering.models import Subscription
from odoo_bridge.models import OdooSyncState, SyncKind
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from tests.rating.test_lago_rules import (  # noqa: F401 (fixtures)
    _one_rating_task,
    call,
    clock,
    make_plan,
    rate,
    subscribe,
    upsert_customer,
    utc,
)

from .test_lifecycle import cron, order_of

pytestmark = pytest.mark.django_db


def test_a_true_up_is_one_off_line_invoiced_once_with_the_window(api_client, clock, fake_odoo):
    # 10.00 a month in arrears, 1.00 a call, commitment 50.00, calendar from Nov 1.
    # November: 10.00 + 5 calls 5.00 = 15.00; true-up 50.00 - 15.00 = 35.00.
    # Odoo invoices on Dec 1: 10.00 + 5.00 + 35.00 = 50.00, the commitment, and never again.
    clock.now = utc(2026, 11, 1)
    make_plan(api_client, "basic", amount_cents=1000)
    response = api_client.put("/api/v1/plans/basic", {"plan": {"minimum_commitment": {
        "amount_cents": 5000, "invoice_display_name": "Monthly minimum"}}}, format="json")
    assert response.status_code == 200, response.content
    upsert_customer(api_client, currency="CAD", country="CA", state="ON", email="ap@acme.test", name="Acme")
    sub = subscribe(api_client, "basic")
    for n in range(5):
        call(api_client, utc(2026, 11, 10), n)
    push_cycle(now=utc(2026, 11, 2))
    rate(clock, utc(2026, 12, 1, 0, 0, 5))
    assert not push_cycle(now=utc(2026, 12, 1, 0, 1)).aborted
    order = order_of(fake_odoo, Subscription.objects.get(pk=sub["lago_id"]))
    fee_product = OdooSyncState.objects.get(kind=SyncKind.FEE_PRODUCT).odoo_id
    lines = fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]], ["product_id", "=", fee_product]],
                              ["name", "price_unit", "recurring_invoice"])
    assert sorted((ln["name"], ln["price_unit"], ln["recurring_invoice"]) for ln in lines) == [
        ("basic 2026-11-01 – 2026-11-30", 10.0, False),
        ("basic minimum commitment true-up 2026-11-01 – 2026-11-30", 35.0, False)]
    assert cron(fake_odoo, dt.date(2026, 12, 1))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("50.00")]
    # Later cycles and runs bill nothing more for November.
    push_cycle(now=utc(2026, 12, 2))
    cron(fake_odoo, dt.date(2026, 12, 2))
    assert fake_odoo.invoiced_totals(order["id"]).untaxed == Decimal("50.00")

    # The mirror renders the true-up as Lago's `commitment` fee (item the Subscription, named by the
    # commitment's invoice_display_name), the base fee as `subscription`, each with its window.
    pull_invoices()
    [invoice] = api_client.get("/api/v1/invoices").json()["invoices"]
    fees = sorted(((f["item"]["type"], f["item"]["item_type"], f["item"]["code"], f["item"]["invoice_display_name"],
                    f["amount_cents"], f["from_date"], f["to_date"]) for f in invoice["fees"]
                   if f["item"]["type"] != "charge"))
    assert fees == [
        ("commitment", "Subscription", "basic", "Monthly minimum", 3500, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("subscription", "Subscription", "basic", "basic", 0, None, None),  # the order's recurring line, price 0
        ("subscription", "Subscription", "basic", "basic 2026-11-01 – 2026-11-30", 1000, "2026-11-01T00:00:00Z",
         "2026-12-01T00:00:00Z")]
    assert [f["item"]["lago_item_id"] for f in invoice["fees"] if f["item"]["type"] == "commitment"] == [sub["lago_id"]]
