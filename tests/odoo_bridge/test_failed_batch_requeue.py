"""A push batch that fails requeues its subscription with that subscription's coupon discount and
prepaid-credit lines (``sync._push_batch``: the rows go in ``rows_of_subscription``, ``_settlement``
retries them): after the failure and the next cycle, each is in Odoo exactly once.

Driven through the HTTP API (catalogue, customer, coupon, wallet, events), the rating task and the
push to the fake Odoo over JSON-RPC, whose fault plan refuses the credit or the discount line, or
answers a 502 to a ``sale.order.line`` create.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering.models import Subscription
from odoo_bridge.models import OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.sync import push_cycle
from tests.coupons.test_odoo_discounts import apply, coupon, discount_lines
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


def credit_lines(fake, order_id: int) -> list[tuple[str, float]]:
    lines = fake.records("sale.order.line", [["order_id", "=", order_id], ["name", "=like", "Prepaid credits%"]],
                         ["name", "price_unit"])
    return [(ln["name"], ln["price_unit"]) for ln in lines]


def _creates(prefix: str):
    """A create of ``sale.order.line`` holding a line named ``prefix...``."""
    return lambda args, kwargs: any(str(vals.get("name", "")).startswith(prefix) for vals in (args or [[]])[0])


# How the batch fails. Odoo refuses the credit line, or the discount line, with a business error: the
# multi-create and then that line's own create (the rest of the batch goes through, the cycle goes on).
# Or Odoo is unreachable (502) for the credit line's create (the first line create), or for the order's
# usage, fee and discount lines' create (the second): the cycle ends there.
FAILURES = {
    "credit-line-refused": dict(kind="error", predicate=_creates("Prepaid credits"), times=2),
    "discount-line-refused": dict(kind="error", predicate=_creates("Coupon welcome"), times=2),
    "credit-line-create-unreachable": dict(kind="http_status", skip=0),
    "order-lines-create-unreachable": dict(kind="http_status", skip=1),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_batch_pushes_its_discount_and_credit_once_on_the_next_cycle(api_client, clock, fake_odoo,
                                                                              failure):
    # Plan 10.00 a month in arrears + 1.00 a call from Nov 1; coupon "welcome" 5.00 once; 3 granted credits.
    # November: 10.00 + 25 calls = 35.00 − 5.00 discount − 3.00 credits = 27.00, billed by the cron of
    # Jan 1 (the cron of Dec 1 ran before the push)
    clock.now = utc(2026, 11, 1)
    make_plan(api_client, "basic", amount_cents=1000)
    upsert_customer(api_client, currency="CAD", country="CA", state="ON", email="ap@acme.test", name="Acme")
    sub = Subscription.objects.get(pk=subscribe(api_client, "basic")["lago_id"])
    coupon(api_client, "welcome", coupon_type="fixed_amount", amount_cents=500, amount_currency="CAD")
    apply(api_client, "welcome")
    wallet = api_client.post("/api/v1/wallets", {"wallet": {
        "external_customer_id": "cus_1", "rate_amount": "1", "granted_credits": "3", "currency": "CAD"}},
        format="json")
    assert wallet.status_code == 200, wallet.content
    push_cycle(now=utc(2026, 11, 2))
    order = order_of(fake_odoo, sub)
    for n in range(25):
        call(api_client, utc(2026, 11, 10), n)
    rate(clock, utc(2026, 12, 1, 0, 0, 5))

    # Odoo's invoicing cron ran at the boundary before the push (nothing of November to bill yet): the
    # order's dates are settled, so nothing but the failed rows brings the subscription back.
    assert cron(fake_odoo, dt.date(2026, 12, 1)) == []
    spec = dict(FAILURES[failure])
    fault = fake_odoo.faults.add(spec.pop("kind"), model="sale.order.line", method="create", **spec)
    failed = push_cycle(now=utc(2026, 12, 1, 0, 1))
    assert fault.fired == fault.times and failed.failed, failed
    assert len(discount_lines(fake_odoo, order["id"])) + len(credit_lines(fake_odoo, order["id"])) < 2
    assert OdooSyncState.objects.filter(status=SyncStatus.FAILED).exists()

    # A cycle before the failed rows' backoff is past leaves them for later (requeued again); the next
    # one after it is change-driven (no full sweep): the subscription came back with its failed discount
    # or credit row.
    assert not push_cycle(now=utc(2026, 12, 1, 0, 1, 10)).aborted
    retried = push_cycle(now=utc(2026, 12, 1, 1, 0))
    assert not retried.aborted and not retried.failed, retried
    assert discount_lines(fake_odoo, order["id"]) == [("Coupon welcome invoice of 2026-12-01", -5.0)]
    assert credit_lines(fake_odoo, order["id"]) == [("Prepaid credits (period ending 2026-11-30)", -3.0)]
    rows = OdooSyncState.objects.filter(kind__in=[SyncKind.COUPON_DISCOUNT, SyncKind.WALLET_CREDIT])
    assert sorted((row.kind, row.status, row.final) for row in rows) == [
        (SyncKind.COUPON_DISCOUNT, SyncStatus.SYNCED, True), (SyncKind.WALLET_CREDIT, SyncStatus.SYNCED, True)]

    # Later cycles, a full sweep included, add nothing; Odoo bills the window once, with both deductions.
    push_cycle(now=utc(2026, 12, 1, 2, 0))
    push_cycle(now=utc(2026, 12, 2), full=True)
    assert len(discount_lines(fake_odoo, order["id"])) == len(credit_lines(fake_odoo, order["id"])) == 1
    assert cron(fake_odoo, dt.date(2027, 1, 1))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("27.00")]
