"""Every Odoo document in the plan's currency (issue #12): the order's pricelist is the plan
currency's, the invoices Odoo makes from it are in that currency, rounded to its ISO 4217
exponent, and the mirror's ``amount_cents`` use that exponent (JPY 0, USD 2, KWD 3).

Driven through the HTTP API, the rating task, the push to the fake Odoo over JSON-RPC, Odoo's
own invoicing run, the pull, and ``GET /invoices``.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering.models import Subscription
from odoo_bridge.models import OdooSyncState, SyncKind, SyncStatus
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

from .test_lifecycle import cron
from .test_reliability import later

pytestmark = pytest.mark.django_db


def bill_november(api_client, clock, fake_odoo, *, currency: str, amount_cents: int, calls: int,
                  gst: bool = False) -> dict:
    """A monthly plan in ``currency`` (1 a call, in arrears) from Nov 1, ``calls`` calls, Odoo's run on Dec 1;
    ``gst``: ops gave the pushed products the 5 % GST in Odoo."""
    clock.now = utc(2026, 11, 1)
    make_plan(api_client, "basic", amount_cents=amount_cents, currency=currency)
    upsert_customer(api_client, currency=currency, email="ap@acme.test", name="Acme")
    sub = subscribe(api_client, "basic")
    for n in range(calls):
        call(api_client, utc(2026, 11, 10), n)
    assert not push_cycle(now=utc(2026, 11, 2)).aborted
    if gst:
        store = fake_odoo.store
        products = [p["id"] for p in fake_odoo.records("product.product", [["default_code", "=like", "fb-%"]])]
        gst_tax = store.xmlid_id("account", "1_gst_sale_tax_5")
        store.write("product.product", products, {"taxes_id": [[6, 0, [gst_tax]]]})
    rate(clock, utc(2026, 12, 1, 0, 0, 5))
    assert not push_cycle(now=utc(2026, 12, 1, 0, 1)).aborted
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub['lago_id']}"]],
                                ["pricelist_id", "currency_id", "invoice_ids"])
    assert cron(fake_odoo, dt.date(2026, 12, 1))
    return order


def the_invoice(api_client) -> dict:
    pull_invoices()
    [invoice] = api_client.get("/api/v1/invoices").json()["invoices"]
    return invoice


def test_a_usd_plan_is_ordered_and_invoiced_in_usd(api_client, clock, fake_odoo):
    # 10.00 USD a month + 5 calls at 1.00 USD: Odoo's run on Dec 1 bills 15.00 USD, 1500 cents.
    order = bill_november(api_client, clock, fake_odoo, currency="USD", amount_cents=1000, calls=5)
    usd = OdooSyncState.objects.get(kind=SyncKind.PRICELIST, object_id="USD")
    assert usd.status == SyncStatus.SYNCED
    [pricelist] = fake_odoo.records("product.pricelist", [["id", "=", usd.odoo_id]], ["name", "currency_id"])
    assert (pricelist["name"], pricelist["currency_id"][1]) == ("Fusion Billing USD", "USD")
    assert order["pricelist_id"][0] == usd.odoo_id and order["currency_id"][1] == "USD"
    [move] = fake_odoo.records("account.move", [["move_type", "=", "out_invoice"]],
                               ["currency_id", "amount_untaxed", "amount_tax", "amount_total"])
    assert move["currency_id"][1] == "USD" and move["amount_untaxed"] == 15.0
    invoice = the_invoice(api_client)
    assert invoice["currency"] == "USD"
    assert invoice["fees_amount_cents"] == 1500
    assert invoice["total_amount_cents"] == round(Decimal(str(move["amount_total"])) * 100)
    assert invoice["taxes_amount_cents"] == round(Decimal(str(move["amount_tax"])) * 100)
    assert {f["amount_currency"] for f in invoice["fees"]} == {"USD"}
    # The one pricelist serves every USD order: a second cycle creates nothing.
    push_cycle(now=utc(2026, 12, 2))
    assert len(fake_odoo.records("product.pricelist", [["name", "=", "Fusion Billing USD"]])) == 1


def test_a_jpy_plan_bills_whole_yen_end_to_end(api_client, clock, fake_odoo):
    # JPY has no minor unit (ISO 4217 exponent 0): amount_cents 1500 is 1500 yen, not 15.00.
    # 1500 JPY + 3 calls at 1 JPY = 1503 JPY; Odoo rounds the invoice to whole yen.
    order = bill_november(api_client, clock, fake_odoo, currency="JPY", amount_cents=1500, calls=3)
    assert order["currency_id"][1] == "JPY"
    sub = Subscription.objects.get()
    assert (sub.currency, sub.plan.amount) == ("JPY", Decimal(1500))
    [move] = fake_odoo.records("account.move", [["move_type", "=", "out_invoice"]],
                               ["currency_id", "amount_untaxed", "amount_total"])
    assert move["currency_id"][1] == "JPY" and move["amount_untaxed"] == 1503.0
    assert move["amount_total"] == round(move["amount_total"])  # whole yen, taxes included
    invoice = the_invoice(api_client)
    assert (invoice["currency"], invoice["fees_amount_cents"]) == ("JPY", 1503)
    assert invoice["total_amount_cents"] == int(move["amount_total"])
    plan_fee = [f for f in invoice["fees"] if f["item"]["type"] == "subscription" and f["amount_cents"]]
    assert [f["amount_cents"] for f in plan_fee] == [1500]


def test_a_kwd_plan_keeps_its_three_decimals_through_the_mirror(api_client, clock, fake_odoo):
    # KWD has 3 decimals: 10.500 KWD + 3 calls at 1.000 = 13.500 KWD (13500 minor units); the tax Odoo
    # computes on it keeps its third decimal in the mirror (never rounded to 2 by assumption).
    order = bill_november(api_client, clock, fake_odoo, currency="KWD", amount_cents=10500, calls=3,
                          gst=True)
    assert order["currency_id"][1] == "KWD"
    [move] = fake_odoo.records("account.move", [["move_type", "=", "out_invoice"]],
                               ["amount_untaxed", "amount_tax", "amount_total"])
    assert move["amount_untaxed"] == 13.5 and move["amount_tax"] == 0.675  # 5% GST, to the fils
    invoice = the_invoice(api_client)
    assert (invoice["currency"], invoice["fees_amount_cents"], invoice["taxes_amount_cents"],
            invoice["total_amount_cents"]) == ("KWD", 13500, 675, 14175)


def test_a_lost_response_on_the_pricelist_create_does_not_create_two(fake_odoo, catalog):
    subs = [catalog.subscription() for _ in range(2)]  # a CAD plan
    fake_odoo.faults.add("lost_response", model="product.pricelist", method="create")
    assert push_cycle().aborted
    assert not fake_odoo.records("sale.order")  # no order without its pricelist
    for hours in (1, 2, 4):
        push_cycle(now=later(hours))
    [pricelist] = fake_odoo.records("product.pricelist", [["name", "=", "Fusion Billing CAD"]], ["currency_id"])
    assert pricelist["currency_id"][1] == "CAD"
    orders = fake_odoo.records("sale.order", [], ["client_order_ref", "pricelist_id"])
    assert sorted(o["client_order_ref"] for o in orders) == sorted(f"fb-sub-{s.pk}" for s in subs)
    assert {o["pricelist_id"][0] for o in orders} == {pricelist["id"]}
    assert OdooSyncState.objects.get(kind=SyncKind.PRICELIST).odoo_id == pricelist["id"]


def test_the_fake_rounds_each_document_to_its_currencys_decimals(fake_odoo):
    # res.currency.round: KWD 3 decimals, JPY 0, CAD (the company's) 2; a move's currency is set at create.
    # 3.333 x 0.41 = 1.36653: KWD 1.367, JPY 1, CAD 1.37.
    store = fake_odoo.store
    totals = {}
    for code in ("KWD", "JPY", "CAD"):
        [currency] = fake_odoo.records("res.currency", [["name", "=", code]], ["id"])
        [move] = store.create("account.move", [{"move_type": "out_invoice", "currency_id": currency["id"],
                                                "invoice_line_ids": [[0, 0, {"name": "x", "quantity": 3.333,
                                                                             "price_unit": 0.41}]]}])
        totals[code] = store.move_amounts(move)[0]
    assert totals == {"KWD": 1.367, "JPY": 1.0, "CAD": 1.37}


def test_an_order_odoo_holds_in_another_currency_is_noted_never_changed(fake_odoo, catalog):
    # An order created before pricelists were pushed (here: moved to a USD pricelist by hand) for a CAD
    # plan: an order's currency never changes; the next look at it notes the difference on its row.
    sub = catalog.subscription()
    assert not push_cycle().aborted
    store = fake_odoo.store
    usd = store.xmlid_id("base", "USD")
    [legacy] = store.create("product.pricelist", [{"name": "Legacy USD", "currency_id": usd}])
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]], ["id"])
    store.write("sale.order", [order["id"]], {"pricelist_id": legacy})
    assert not push_cycle(now=later(25), full=True).aborted
    [order] = fake_odoo.records("sale.order", [["id", "=", order["id"]]], ["pricelist_id", "currency_id"])
    assert (order["pricelist_id"][0], order["currency_id"][1]) == (legacy, "USD")
    row = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION)
    assert row.status == SyncStatus.SYNCED
    assert row.pricing_note == "Odoo's order is in USD, its plan in CAD: not changed"
