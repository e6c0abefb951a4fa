"""A yearly plan billing charges monthly through Odoo (issue #12): the order is a MONTHLY Odoo
subscription (its invoicing periods are the usage windows) and the yearly fee a one-off line billed
once. Driven through the HTTP API, the rating task, the push to the fake Odoo over JSON-RPC and
Odoo's invoicing cron.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering.models import Subscription
from odoo_bridge.sync import push_cycle
from tests.rating.test_bill_charges_monthly import yearly_plan
from tests.rating.test_lago_rules import (  # noqa: F401 (fixtures)
    _one_rating_task,
    call,
    clock,
    rate,
    subscribe,
    upsert_customer,
    utc,
)

from .test_lifecycle import cron, order_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_usage_is_invoiced_every_month_and_the_yearly_fee_once(api_client, clock, fake_odoo, pay_in_advance):
    # 120.00 a year, 1.00 a call, calendar from Nov 1 2026: the fee's first period is Nov 1 - Dec 31,
    # 61 of 365 days: 120 x 61/365 = 20.054795 -> 20.05 on the line.
    # Arrears: Dec 1 bills November's 2 calls (2.00, no fee); Jan 1 December's 3 calls + the fee
    # (3.00 + 20.05). Advance: the fee at once (20.05), Dec 1 2.00, Jan 1 3.00 + 2027's fee 120.00.
    clock.now = utc(2026, 11, 1)
    yearly_plan(api_client, "annual", amount_cents=12000, pay_in_advance=pay_in_advance)
    upsert_customer(api_client, currency="CAD", country="CA", state="ON", email="ap@acme.test", name="Acme")
    sub = subscribe(api_client, "annual")
    call(api_client, utc(2026, 11, 10), 1)
    call(api_client, utc(2026, 11, 11), 2)
    assert not push_cycle(now=utc(2026, 11, 1, 0, 1)).aborted
    order = order_of(fake_odoo, Subscription.objects.get(pk=sub["lago_id"]))
    [with_plan] = fake_odoo.records("sale.order", [["id", "=", order["id"]]], ["plan_id"])
    plan_id = with_plan["plan_id"][0] if isinstance(with_plan["plan_id"], list) else with_plan["plan_id"]
    [odoo_plan] = fake_odoo.records("sale.subscription.plan", [["id", "=", plan_id]],
                                    ["billing_period_value", "billing_period_unit"])
    assert (odoo_plan["billing_period_value"], odoo_plan["billing_period_unit"]) == (1, "month")
    assert (order["start_date"], order["next_invoice_date"]) == ("2026-11-01", "2026-12-01")
    invoices = fake_odoo.invoices(order["id"])
    assert [i.amount_untaxed for i in invoices] == ([Decimal("20.05")] if pay_in_advance else [])

    assert cron(fake_odoo, dt.date(2026, 11, 30)) == []  # November is open: nothing
    rate(clock, utc(2026, 12, 1, 0, 0, 5))
    assert not push_cycle(now=utc(2026, 12, 1, 0, 1)).aborted
    assert len(cron(fake_odoo, dt.date(2026, 12, 1))) == 1
    assert fake_odoo.invoices(order["id"])[-1].amount_untaxed == Decimal("2.00")  # usage only
    assert order_of(fake_odoo, Subscription.objects.get(pk=sub["lago_id"]))["next_invoice_date"] == "2027-01-01"

    for n in range(3):
        call(api_client, utc(2026, 12, 5), 10 + n)
    rate(clock, utc(2027, 1, 1, 0, 0, 5))
    assert not push_cycle(now=utc(2027, 1, 1, 0, 1)).aborted
    assert len(cron(fake_odoo, dt.date(2027, 1, 1))) == 1
    january = fake_odoo.invoices(order["id"])[-1]
    expected = Decimal("123.00") if pay_in_advance else Decimal("23.05")
    assert january.amount_untaxed == expected
    assert fake_odoo.invoiced_totals(order["id"]).untaxed == expected + Decimal("2.00") + (
        Decimal("20.05") if pay_in_advance else 0)

    # January 2027 has no usage and (arrears) no fee: Feb 1 invoices nothing more.
    rate(clock, utc(2027, 2, 1, 0, 0, 5))
    push_cycle(now=utc(2027, 2, 1, 0, 1))
    before = fake_odoo.invoiced_totals(order["id"]).untaxed
    cron(fake_odoo, dt.date(2027, 2, 1))
    assert fake_odoo.invoiced_totals(order["id"]).untaxed == before
    lines = fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]], ["recurring_invoice", "=", True]],
                              ["product_uom_qty"])
    assert len(lines) == 1  # one recurring line: the plan's (price 0)
