"""Applied coupons become negative discount lines on the right Odoo invoices, exactly once (issue #14).

Driven through the HTTP API (catalogue, customer, coupons, events), the rating task and the push to
the fake Odoo over JSON-RPC; Odoo's invoicing cron bills each window's close, the pull mirrors it and
GET /invoices shows Lago's ``coupons_amount_cents`` and ``credits``.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from lago_python_client.models.invoice import InvoiceResponse

from coupons.models import AppliedCoupon, CouponBoundary, CouponDiscount
from metering.models import Subscription
from odoo_bridge.models import OdooSyncState, SyncKind
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from tests.odoo_bridge.conftest import fake_odoo  # noqa: F401 (fixture)
from tests.odoo_bridge.test_lifecycle import cron, order_of
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

pytestmark = pytest.mark.django_db


def coupon(client, code: str, **fields) -> None:
    response = client.post("/api/v1/coupons", {"coupon": {"name": code.title(), "code": code,
                                                          "expiration": "no_expiration", **fields}}, format="json")
    assert response.status_code == 200, response.content


def apply(client, code: str, **overrides) -> dict:
    response = client.post("/api/v1/applied_coupons", {"applied_coupon": {
        "external_customer_id": "cus_1", "coupon_code": code, **overrides}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["applied_coupon"]


def discount_lines(fake, order_id: int) -> list[tuple[str, float]]:
    products = {r.odoo_id for r in OdooSyncState.objects.filter(kind=SyncKind.COUPON_PRODUCT)}
    lines = fake.records("sale.order.line", [["order_id", "=", order_id]], ["name", "price_unit", "product_id"])
    return sorted((ln["name"].split(" (")[0], ln["price_unit"]) for ln in lines
                  if ln["product_id"] and ln["product_id"][0] in products)


def month(clock, api_client, fake, *, calls: int, first: int, in_month: dt.datetime, close: dt.datetime) -> None:
    for n in range(calls):
        call(api_client, in_month, first + n)
    rate(clock, close + dt.timedelta(seconds=5))
    report = push_cycle(now=close + dt.timedelta(minutes=1))
    assert not report.aborted and not report.failed, report


def test_coupons_are_discount_lines_on_the_right_invoices_exactly_once(api_client, clock, fake_odoo):
    # Plan 10.00 a month in arrears + 1.00 a call, calendar from Nov 1. Coupons applied on Nov 1, oldest first:
    #   "tenpct": 10 % recurring for 2 invoices;  "welcome": 20.00 once.
    # November: 10.00 + 25 calls = 35.00 → tenpct 3.50 (35.00 × 10 %), left 31.50 → welcome 20.00 (spent)
    #           → invoice of Dec 1: 35.00 − 23.50 = 11.50
    # December: 10.00 + 5 calls = 15.00 → tenpct 1.50 (its last period) → invoice of Jan 1: 13.50
    # January:  10.00, no coupon left → invoice of Feb 1: 10.00
    clock.now = utc(2026, 11, 1)
    make_plan(api_client, "basic", amount_cents=1000)
    upsert_customer(api_client, currency="CAD", country="CA", state="ON", email="ap@acme.test", name="Acme")
    sub = subscribe(api_client, "basic")
    coupon(api_client, "tenpct", coupon_type="percentage", percentage_rate="10", frequency="recurring",
           frequency_duration=2)
    coupon(api_client, "welcome", coupon_type="fixed_amount", amount_cents=2000, amount_currency="CAD")
    ten = apply(api_client, "tenpct")
    clock.now = utc(2026, 11, 1, 0, 0, 1)
    welcome = apply(api_client, "welcome")
    push_cycle(now=utc(2026, 11, 2))
    order = order_of(fake_odoo, Subscription.objects.get(pk=sub["lago_id"]))

    # The discount line's create answer is lost once: the next cycle finds it, never a second line.
    fake_odoo.faults.add("lost_response", model="sale.order.line", method="create")
    for n in range(25):
        call(api_client, utc(2026, 11, 10), n)
    rate(clock, utc(2026, 12, 1, 0, 0, 5))
    push_cycle(now=utc(2026, 12, 1, 0, 1))
    assert not push_cycle(now=utc(2026, 12, 1, 0, 2)).aborted
    assert discount_lines(fake_odoo, order["id"]) == [("Coupon tenpct invoice of 2026-12-01", -3.5),
                                                      ("Coupon welcome invoice of 2026-12-01", -20.0)]
    assert cron(fake_odoo, dt.date(2026, 12, 1))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("11.50")]

    month(clock, api_client, fake_odoo, calls=5, first=100, in_month=utc(2026, 12, 10), close=utc(2027, 1, 1))
    assert cron(fake_odoo, dt.date(2027, 1, 1))
    month(clock, api_client, fake_odoo, calls=0, first=200, in_month=utc(2027, 1, 10), close=utc(2027, 2, 1))
    assert cron(fake_odoo, dt.date(2027, 2, 1))
    # Later cycles and runs add nothing.
    push_cycle(now=utc(2027, 2, 2))
    cron(fake_odoo, dt.date(2027, 2, 2))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [
        Decimal("11.50"), Decimal("13.50"), Decimal("10.00")]
    assert discount_lines(fake_odoo, order["id"]) == [("Coupon tenpct invoice of 2026-12-01", -3.5),
                                                      ("Coupon tenpct invoice of 2027-01-01", -1.5),
                                                      ("Coupon welcome invoice of 2026-12-01", -20.0)]
    assert CouponDiscount.objects.count() == 3
    # Dec 1 and Jan 1 computed once each; by Feb 1 the customer has no active coupon left.
    assert sorted(b.boundary for b in CouponBoundary.objects.all()) == [utc(2026, 12, 1), utc(2027, 1, 1)]
    consumed = {a.coupon.code: (a.status, a.frequency_duration_remaining) for a in AppliedCoupon.objects.all()}
    assert consumed == {"tenpct": ("terminated", 0), "welcome": ("terminated", None)}

    # The mirror: Lago's invoice shows fees before coupons, the coupons and their credits.
    assert pull_invoices().invoices_created == 3
    body = api_client.get("/api/v1/invoices", {"per_page": 10}).json()["invoices"]
    december = next(i for i in body if i["issuing_date"] == "2026-12-01")
    assert (december["fees_amount_cents"], december["coupons_amount_cents"],
            december["sub_total_excluding_taxes_amount_cents"]) == (3500, 2350, 1150)
    assert sorted((c["item"]["code"], c["amount_cents"], c["item"]["lago_item_id"])
                  for c in december["credits"]) == [("tenpct", 350, ten["lago_id"]),
                                                     ("welcome", 2000, welcome["lago_id"])]
    assert sum(f["amount_cents"] for f in december["fees"]) == 3500
    InvoiceResponse.parse_obj(december)
    applied = api_client.get("/api/v1/applied_coupons", {"coupon_code[]": "welcome"}).json()["applied_coupons"]
    assert (applied[0]["amount_cents_remaining"], [c["amount_cents"] for c in applied[0]["credits"]]) == (0, [2000])


def test_a_first_advance_invoice_and_a_final_invoice_carry_their_discounts_before_the_order_closes(
        api_client, clock, fake_odoo):
    # Customer with "half" (50 % once) applied before subscribing to an advance plan of 30.00 a month:
    # the first window's fee is invoiced at once through the wizard: 30.00 − 15.00 = 15.00.
    # Then "five" (5.00 forever) and an arrears plan 30.00 (sub_2) from Nov 1, terminated Nov 20 10:00 with
    # 3 calls: 30.00 × 20/30 = 20.00 + 3.00 = 23.00 − 5.00 → one final invoice of 18.00, then set_close.
    clock.now = utc(2026, 11, 1)
    make_plan(api_client, "adv", amount_cents=3000, pay_in_advance=True)
    make_plan(api_client, "arr", amount_cents=3000)
    upsert_customer(api_client, currency="CAD", country="CA", state="ON", email="ap@acme.test", name="Acme")
    coupon(api_client, "half", coupon_type="percentage", percentage_rate="50", frequency="once")
    coupon(api_client, "five", coupon_type="fixed_amount", amount_cents=500, amount_currency="CAD",
           frequency="forever")
    apply(api_client, "half")
    clock.now = utc(2026, 11, 1, 0, 0, 1)
    advance = subscribe(api_client, "adv", external_id="sub_1", subscription_at="2026-11-01T00:00:01Z")
    push_cycle(now=utc(2026, 11, 1, 0, 1))
    first = order_of(fake_odoo, Subscription.objects.get(pk=advance["lago_id"]))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(first["id"])] == [Decimal("15.00")]

    clock.now = utc(2026, 11, 1, 0, 2)
    apply(api_client, "five")
    arrears = subscribe(api_client, "arr", external_id="sub_2", subscription_at="2026-11-01T00:00:00Z")
    push_cycle(now=utc(2026, 11, 2))
    for n in range(3):
        call(api_client, utc(2026, 11, 10), 300 + n, external_id="sub_2")
    clock.now = utc(2026, 11, 20, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_2").status_code == 200
    rate(clock, utc(2026, 11, 20, 10, 0, 5))
    push_cycle(now=utc(2026, 11, 20, 10, 1))
    push_cycle(now=utc(2026, 11, 20, 10, 2))
    final = order_of(fake_odoo, Subscription.objects.get(pk=arrears["lago_id"]))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(final["id"])] == [Decimal("18.00")]
    assert final["subscription_state"] == "6_churn"
    assert discount_lines(fake_odoo, final["id"]) == [("Coupon five invoice of 2026-11-20", -5.0)]
    # "five" is forever: still active after it; "half" was used once.
    assert {a.coupon.code: a.status for a in AppliedCoupon.objects.all()} == {"half": "terminated",
                                                                              "five": "active"}
