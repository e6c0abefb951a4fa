"""Billing lifecycle against the fake Odoo's faithful invoicing (issue #12 invariants 1-4).

Odoo's cron (`run_invoicing_cron`) runs at arbitrary moments; the money is checked with the fake's
ledger (`invoiced_totals`, `invoices`): net of refunds, in Decimal.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering.models import Plan, RatedUsage, Subscription
from odoo_bridge.models import OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.sync import push_cycle
from odoo_bridge.testing import ledger

from .conftest import UTC, WINDOW_END, WINDOW_START

pytestmark = pytest.mark.django_db

D = dt.date
DEC_END = dt.datetime(2027, 1, 1, tzinfo=UTC)


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def odoo_day(fake, day: dt.date) -> None:
    """Odoo's own clock (invoice dates of the wizard and of action_post)."""
    fake.store.clock = lambda: at(day)


def cron(fake, day: dt.date) -> list[int]:
    odoo_day(fake, day)
    return fake.run_invoicing_cron(today=day)


def order_of(fake, sub: Subscription) -> dict:
    [order] = fake.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]],
                           ["start_date", "next_invoice_date", "subscription_state", "order_line"])
    return order


def billed(fake, order_id: int, product_id: int) -> Decimal:
    return fake.invoiced_totals(order_id).by_product.get(product_id, Decimal(0))


def roll(sub: Subscription, start: dt.datetime, end: dt.datetime) -> None:
    """What rating does when a window closes: the subscription's current window moves on."""
    Subscription.objects.filter(pk=sub.pk).update(current_period_start=start, current_period_end=end)


def last_day_of(label: str) -> dt.date:
    return dt.date.fromisoformat(label.split("–")[1].strip()[:10])


def test_usage_is_invoiced_only_for_closed_windows_and_exactly_once(fake_odoo, catalog):
    """Invariants 1 and 2 with the cron at arbitrary moments, including before the window froze.

    November: 150 calls x 0.02 = 3.00 while open, 175 calls = 3.50 when it freezes (late events within grace).
    December: 100 calls = 2.00. Billed over all invoices: 3.50 + 2.00 = 5.50, never an open window.
    """
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", state="open")
    push_cycle(now=at(D(2026, 11, 20)))
    order = order_of(fake_odoo, sub)
    assert (order["start_date"], order["next_invoice_date"]) == ("2026-11-01", "2026-12-01")
    assert cron(fake_odoo, D(2026, 11, 15)) == [] and cron(fake_odoo, D(2026, 11, 30)) == []
    # Dec 1: Odoo's cron runs before rating froze November: nothing to bill (the open window stays home)
    assert cron(fake_odoo, D(2026, 12, 1)) == []
    catalog.rate(sub, catalog.api_charge, units="175", amount="3.500000", state="frozen")
    roll(sub, WINDOW_END, DEC_END)
    catalog.rate(sub, catalog.api_charge, units="40", amount="0.800000", state="open", start=WINDOW_END, end=DEC_END)
    push_cycle(now=at(D(2026, 12, 1), 1))
    assert cron(fake_odoo, D(2026, 12, 2)) == []  # Odoo moved to Jan 1 on its own "free" run; nothing is lost
    catalog.rate(sub, catalog.api_charge, units="100", amount="2.000000", state="open", start=WINDOW_END, end=DEC_END)
    push_cycle(now=at(D(2026, 12, 31)))
    [jan] = cron(fake_odoo, D(2027, 1, 1))  # November's 3.50; December is still open
    catalog.rate(sub, catalog.api_charge, units="100", amount="2.000000", state="frozen", start=WINDOW_END,
                 end=DEC_END)
    roll(sub, DEC_END, dt.datetime(2027, 2, 1, tzinfo=UTC))
    push_cycle(now=at(D(2027, 1, 1), 2))
    cron(fake_odoo, D(2027, 1, 15))
    [feb] = cron(fake_odoo, D(2027, 2, 1))

    catalog.api_charge.refresh_from_db()
    product = catalog.api_charge.odoo_product_id
    invoices = {inv.id: inv for inv in fake_odoo.invoices(order["id"])}
    assert set(invoices) == {jan, feb}
    for inv in invoices.values():  # invariant 1: every usage line's window ended before its invoice
        for line in inv.lines:
            if line.product_id == product:
                assert last_day_of(line.name) < inv.invoice_date
    assert [ln.subtotal for ln in invoices[jan].lines if ln.product_id == product] == [Decimal("3.50")]
    assert [ln.subtotal for ln in invoices[feb].lines if ln.product_id == product] == [Decimal("2.00")]
    # invariant 2: billed over all invoices == rated amount of the closed windows
    assert billed(fake_odoo, order["id"], product) == Decimal("5.50") == sum(
        u.amount for u in RatedUsage.objects.filter(subscription=sub, state="frozen")).quantize(Decimal("0.01"))


def test_a_different_amount_after_invoicing_goes_on_the_next_invoice_as_a_delta(fake_odoo, catalog):
    """A lost response or old data: Odoo invoiced 3.00 for November, the frozen row says 3.40, later 3.10.

    +0.40 goes on the next invoice as "(correction 1)", then -0.30 as "(correction 2)"; net billed 3.10.
    """
    sub = catalog.subscription()
    usage = catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    push_cycle(now=at(D(2026, 12, 1), 1))
    [first] = cron(fake_odoo, D(2026, 12, 1))
    catalog.api_charge.refresh_from_db()
    product = catalog.api_charge.odoo_product_id
    order = order_of(fake_odoo, sub)

    def rerate(units: str, amount: str) -> None:  # as if the bridge never heard Odoo's answer
        RatedUsage.objects.filter(pk=usage.pk).update(units=Decimal(units), billable_units=Decimal(units),
                                                      amount=Decimal(amount))
        OdooSyncState.objects.filter(kind=SyncKind.USAGE).update(final=False, pushed_hash="")

    rerate("170", "3.400000")
    roll(sub, WINDOW_END, DEC_END)
    report = push_cycle(now=at(D(2026, 12, 2)))
    assert report.corrections == 1
    catalog.fee(sub, amount="49.000000", start=WINDOW_END, end=DEC_END)  # December's arrears fee
    push_cycle(now=at(D(2026, 12, 31)))
    [second] = cron(fake_odoo, D(2027, 1, 1))
    lines = [ln for ln in fake_odoo.invoices(order["id"])[-1].lines if ln.product_id == product]
    assert [(ln.name.endswith("(correction 1)"), ln.subtotal) for ln in lines] == [(True, Decimal("0.40"))]
    assert billed(fake_odoo, order["id"], product) == Decimal("3.40")

    rerate("155", "3.100000")
    push_cycle(now=at(D(2027, 1, 2)))
    catalog.fee(sub, amount="49.000000", start=DEC_END, end=dt.datetime(2027, 2, 1, tzinfo=UTC))
    roll(sub, DEC_END, dt.datetime(2027, 2, 1, tzinfo=UTC))
    push_cycle(now=at(D(2027, 1, 31)))
    cron(fake_odoo, D(2027, 2, 1))
    assert billed(fake_odoo, order["id"], product) == Decimal("3.10")  # 3.00 + 0.40 - 0.30
    state = OdooSyncState.objects.get(kind=SyncKind.USAGE)
    assert state.status == SyncStatus.SYNCED and state.frozen and "correction" in state.pricing_note
    assert first and second


def test_plan_fees_become_one_off_lines_exactly_once(fake_odoo, catalog):
    """Arrears fee 49.00, a prorated fee 26.133333 -> 26.13, a credit -12.25, a zero fee (trial) -> no line.

    The first line create answers nothing (committed in Odoo): the next cycle finds it, no duplicate.
    """
    sub = catalog.subscription()
    push_cycle(now=at(D(2026, 11, 2)))  # the order exists: fee lines go through sale.order.line.create
    catalog.fee(sub, amount="49.000000")
    catalog.fee(sub, amount="26.133333", units="0.533333", start=WINDOW_END, end=DEC_END)
    catalog.fee(sub, amount="-12.250000", kind="credit", start=dt.datetime(2026, 12, 23, tzinfo=UTC), end=DEC_END)
    catalog.fee(sub, amount="0", start=DEC_END, end=dt.datetime(2027, 2, 1, tzinfo=UTC))
    fake_odoo.faults.add("lost_response", model="sale.order.line", method="create")
    assert push_cycle(now=at(D(2026, 11, 3))).aborted
    for hours in (1, 2, 4):
        push_cycle(now=at(D(2026, 11, 3)) + dt.timedelta(hours=hours))
    fee_product = OdooSyncState.objects.get(kind=SyncKind.FEE_PRODUCT).odoo_id
    lines = fake_odoo.records("sale.order.line", [["product_id", "=", fee_product]],
                              ["name", "price_unit", "product_uom_qty", "recurring_invoice"])
    assert sorted((ln["name"], ln["price_unit"]) for ln in lines) == [
        ("Pro 2026-11-01 – 2026-11-30", 49.0), ("Pro 2026-12-01 – 2026-12-31", 26.13),
        ("Pro credit for unused time 2026-12-23 – 2026-12-31", -12.25)]
    assert not any(ln["recurring_invoice"] for ln in lines)  # billed once, never again per period
    assert OdooSyncState.objects.filter(kind=SyncKind.PLAN_FEE, final=True, status="synced").count() == 4
    fake_odoo.reset_counters()
    assert push_cycle(now=at(D(2026, 11, 4))).records_written == 0


def test_an_order_never_carries_another_plans_recurring_line(fake_odoo, catalog):
    """Old model: the subscription's plan was changed in place. No second recurring line; the stale one -> qty 0."""
    sub = catalog.subscription()
    push_cycle(now=at(D(2026, 11, 2)))
    business = Plan.objects.create(service=catalog.service, code="business", name="Business", interval="monthly",
                                   amount=Decimal("99.00"), amount_currency="CAD")
    Subscription.objects.filter(pk=sub.pk).update(plan=business)
    report = push_cycle(now=at(D(2026, 11, 3)))
    assert report.stale_recurring_lines == 1
    order = order_of(fake_odoo, sub)
    recurring = fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]], ["recurring_invoice", "=", True]],
                                  ["name", "product_uom_qty"])
    assert [(ln["name"], ln["product_uom_qty"]) for ln in recurring] == [("Pro", 0.0)]
    assert push_cycle(now=at(D(2026, 11, 4))).stale_recurring_lines == 0


def test_calendar_subscription_started_mid_month_is_invoiced_on_the_first(fake_odoo, catalog):
    """Started Nov 15 10:00 UTC, calendar windows: [Nov 15, Dec 1), [Dec 1, Jan 1).

    Arrears fee 49.00 x 16/30 = 26.133333 -> 26.13. Odoo invoices on Dec 1 (the window's close), not on the
    Dec 15 anniversary; after posting, Odoo's own period puts next_invoice_date on Jan 1 = the next close.
    """
    started = dt.datetime(2026, 11, 15, 10, tzinfo=UTC)
    sub = catalog.subscription()
    Subscription.objects.filter(pk=sub.pk).update(started_at=started, subscription_at=started,
                                                  current_period_start=started, current_period_end=WINDOW_END)
    push_cycle(now=at(D(2026, 11, 15), 11))
    order = order_of(fake_odoo, sub)
    assert (order["start_date"], order["next_invoice_date"]) == ("2026-11-15", "2026-12-01")
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", start=started)
    catalog.fee(sub, amount="26.133333", units="0.533333", start=started)
    roll(sub, WINDOW_END, DEC_END)
    push_cycle(now=at(D(2026, 12, 1), 0))
    assert cron(fake_odoo, D(2026, 11, 30)) == []
    [move] = cron(fake_odoo, D(2026, 12, 1))
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("29.13")]
    assert cron(fake_odoo, D(2026, 12, 15)) == []  # no anniversary invoice
    assert order_of(fake_odoo, sub)["next_invoice_date"] == "2027-01-01"
    assert move


def test_next_invoice_date_is_put_back_on_the_window_close_and_waits_for_a_due_boundary(fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle(now=at(D(2026, 11, 2)))
    order = order_of(fake_odoo, sub)
    fake_odoo.store.write("sale.order", [order["id"]], {"next_invoice_date": "2026-12-15"})  # Odoo's own period
    # nothing changed on our side: the daily full sweep is the order's one look a day
    assert push_cycle(now=at(D(2026, 11, 3))).subscriptions_seen == 0
    push_cycle(now=at(D(2026, 11, 3)), full=True)
    assert order_of(fake_odoo, sub)["next_invoice_date"] == "2026-12-01"
    # the window rolled but Odoo has not invoiced the Dec 1 boundary yet: the bridge leaves it for the cron
    roll(sub, WINDOW_END, DEC_END)
    push_cycle(now=at(D(2026, 12, 1), 3))
    assert order_of(fake_odoo, sub)["next_invoice_date"] == "2026-12-01"


def test_billing_timezone_gives_the_calendar_day_of_a_window_boundary(settings, catalog):
    from odoo_bridge import mapping
    from odoo_bridge.orders import billing_timezone

    settings.BILLING_TIMEZONE = "America/Toronto"
    sub = catalog.subscription()
    sub.started_at = dt.datetime(2026, 11, 15, 3, tzinfo=UTC)  # Nov 14, 22:00 in Toronto
    sub.current_period_end = dt.datetime(2026, 12, 1, 5, tzinfo=UTC)  # Dec 1, 00:00 in Toronto
    tz = billing_timezone()
    assert mapping.order_start_date(sub, tz) == D(2026, 11, 14)
    assert mapping.order_next_invoice_date(sub, tz, dt.timedelta(0)) == D(2026, 12, 1)
    assert mapping.order_next_invoice_date(sub, tz, dt.timedelta(hours=-1)) == D(2026, 11, 30)


def test_advance_fee_is_invoiced_at_the_start_through_the_wizard_once(fake_odoo, catalog):
    """pay_in_advance: the first window's fee (26.13 for [Nov 15, Dec 1)) is invoiced at once, not at Dec 1.

    The first create_invoices answer is lost (Odoo committed the draft): the next cycle posts that draft
    instead of invoicing twice. Posting moved next_invoice_date; it is put back on Dec 1.
    """
    Plan.objects.filter(pk=catalog.plan.pk).update(pay_in_advance=True)
    started = dt.datetime(2026, 11, 15, 10, tzinfo=UTC)
    sub = catalog.subscription()
    Subscription.objects.filter(pk=sub.pk).update(started_at=started, subscription_at=started,
                                                  current_period_start=started)
    catalog.fee(sub, amount="26.133333", units="0.533333", start=started)
    odoo_day(fake_odoo, D(2026, 11, 15))
    fake_odoo.faults.add("lost_response", model="sale.advance.payment.inv", method="create_invoices")
    push_cycle(now=at(D(2026, 11, 15), 11))
    push_cycle(now=at(D(2026, 11, 15), 14))
    order = order_of(fake_odoo, sub)
    [invoice] = fake_odoo.invoices(order["id"])
    assert invoice.invoice_date == D(2026, 11, 15) and invoice.amount_untaxed == Decimal("26.13")
    assert order["next_invoice_date"] == "2026-12-01"
    assert OdooSyncState.objects.get(kind=SyncKind.PLAN_FEE).final
    assert push_cycle(now=at(D(2026, 11, 16))).invoiced_now == 0
    assert cron(fake_odoo, D(2026, 12, 1)) == []  # nothing billed twice at the window's close


def test_termination_invoices_the_last_window_and_fee_once_then_closes(fake_odoo, catalog):
    """Terminated Nov 20: the final window [Nov 1, Nov 20) freezes with 3.00 of usage, its arrears fee
    49.00 x 19/30 = 31.033333 -> 31.03. One invoice of 34.03 right away, then set_close; never again."""
    sub = catalog.subscription()
    end = dt.datetime(2026, 11, 20, tzinfo=UTC)
    push_cycle(now=at(D(2026, 11, 2)))
    usage = catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", state="open", end=end)
    Subscription.objects.filter(pk=sub.pk).update(status="terminated", terminated_at=end)
    odoo_day(fake_odoo, D(2026, 11, 20))
    push_cycle(now=at(D(2026, 11, 20)))  # metering has not frozen the final window yet: wait
    order = order_of(fake_odoo, sub)
    assert order["subscription_state"] == "3_progress" and fake_odoo.invoices(order["id"]) == []
    RatedUsage.objects.filter(pk=usage.pk).update(state="frozen")
    catalog.fee(sub, amount="31.033333", units="0.633333", end=end)
    fake_odoo.faults.add("error", model="account.move", method="action_post", times=1)
    push_cycle(now=at(D(2026, 11, 20), 10))  # Odoo refuses the posting: the draft stays, the order stays open
    assert order_of(fake_odoo, sub)["subscription_state"] == "3_progress"
    push_cycle(now=at(D(2026, 11, 21)))
    order = order_of(fake_odoo, sub)
    [invoice] = fake_odoo.invoices(order["id"])
    assert invoice.amount_untaxed == Decimal("34.03") and invoice.state == "posted"
    assert order["subscription_state"] == "6_churn"
    assert OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION).final
    assert push_cycle(now=at(D(2026, 11, 22))).subscriptions_seen == 0
    assert cron(fake_odoo, D(2026, 12, 1)) == [] and len(fake_odoo.invoices(order["id"], )) == 1
    assert ledger.invoices(fake_odoo.store, order["id"], states=("draft",)) == []


def test_a_refused_close_is_retried_by_the_next_cycle_without_invoicing_again(fake_odoo, catalog):
    """Found by tests/e2e/test_money_invariants.py: Odoo refusing ``set_close`` (a business error) made
    push_cycle raise. Terminated Nov 20 with 3.00 of usage and its fee 31.03: one invoice of 34.03; the
    close refused once is recorded on the order and done by the next cycle, with no second invoice."""
    sub = catalog.subscription()
    end = dt.datetime(2026, 11, 20, tzinfo=UTC)
    push_cycle(now=at(D(2026, 11, 2)))
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", end=end)
    catalog.fee(sub, amount="31.033333", units="0.633333", end=end)
    Subscription.objects.filter(pk=sub.pk).update(status="terminated", terminated_at=end)
    odoo_day(fake_odoo, D(2026, 11, 20))
    fake_odoo.faults.add("error", model="sale.order", method="set_close", times=1)
    report = push_cycle(now=at(D(2026, 11, 20)))
    assert report.failed == 1 and report.orders_closed == 0
    order = order_of(fake_odoo, sub)
    assert order["subscription_state"] == "3_progress"
    assert OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION).status == SyncStatus.FAILED
    assert push_cycle(now=at(D(2026, 11, 21))).orders_closed == 1
    order = order_of(fake_odoo, sub)
    assert order["subscription_state"] == "6_churn"
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("34.03")]


def test_a_refused_confirmation_leaves_a_draft_that_the_next_cycle_confirms(fake_odoo, catalog):
    """Found by tests/e2e/test_money_invariants.py: Odoo refusing ``action_confirm`` made push_cycle raise
    (and the order would have been marked synced as a draft, never invoiced). Now the order stays failed,
    the next cycle finds the draft and confirms it, and Odoo bills November's 3.00 on Dec 1."""
    sub = catalog.subscription()
    fake_odoo.faults.add("error", model="sale.order", method="action_confirm", times=1)
    report = push_cycle(now=at(D(2026, 11, 2)))
    assert report.failed == 1 and order_of(fake_odoo, sub)["subscription_state"] is False
    assert OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION).status == SyncStatus.FAILED
    assert push_cycle(now=at(D(2026, 11, 3))).orders_confirmed == 1
    order = order_of(fake_odoo, sub)
    assert order["subscription_state"] == "3_progress" and len(fake_odoo.records("sale.order")) == 1
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    roll(sub, WINDOW_END, DEC_END)
    push_cycle(now=at(D(2026, 12, 1), 1))
    [move] = cron(fake_odoo, D(2026, 12, 1))
    catalog.api_charge.refresh_from_db()
    assert billed(fake_odoo, order["id"], catalog.api_charge.odoo_product_id) == Decimal("3.00") and move


MONTHS = [dt.datetime(2026, 11 + i, 1, tzinfo=UTC) if i < 2 else dt.datetime(2027, i - 1, 1, tzinfo=UTC)
          for i in range(6)]  # Nov 1, Dec 1, Jan 1, Feb 1, Mar 1, Apr 1


@pytest.mark.parametrize("seed", range(6))
def test_any_interleaving_of_rating_push_lost_answers_and_cron_bills_each_closed_window_once(
        fake_odoo, catalog, seed):
    """Random (seeded) walks over four monthly windows: rating grows the open window, the window closes
    (freeze + roll), push cycles (some with a lost answer from Odoo), Odoo's cron on any day. At the end the
    usage billed over all invoices == the frozen amounts (invariant 2), and no invoice holds usage of a
    window not closed when it was issued (invariant 1)."""
    import random

    rng = random.Random(seed)
    sub = catalog.subscription()
    window, units, day, clock = 0, 0, D(2026, 11, 1), at(D(2026, 11, 1))
    frozen_total = Decimal(0)
    issued: dict[int, dt.date] = {}
    while window < 4:
        action = rng.choice(["rate", "rate", "close", "push", "push", "cron", "lost", "day"])
        if action == "rate":
            units += rng.randint(1, 50)
            catalog.rate(sub, catalog.api_charge, units=str(units), amount=str(Decimal(units) * Decimal("0.02")),
                         state="open", start=MONTHS[window], end=MONTHS[window + 1])
        elif action == "close" and day >= MONTHS[window + 1].date():
            catalog.rate(sub, catalog.api_charge, units=str(units), amount=str(Decimal(units) * Decimal("0.02")),
                         state="frozen", start=MONTHS[window], end=MONTHS[window + 1])
            frozen_total += Decimal(units) * Decimal("0.02")
            window, units = window + 1, 0
            roll(sub, MONTHS[window], MONTHS[window + 1])
        elif action == "push":
            push_cycle(now=clock)
        elif action == "lost":
            fake_odoo.faults.add("lost_response", model=rng.choice(["sale.order", "sale.order.line"]),
                                 method="create", times=1)
            push_cycle(now=clock)
            fake_odoo.faults.clear()
        elif action == "cron":
            for move in cron(fake_odoo, day):
                issued[move] = day
        elif action == "day":
            day += dt.timedelta(days=rng.choice([1, 3, 9, 17]))
            clock = at(day)
    for _ in range(2):  # settle: every closed window reaches Odoo, the cron runs past the last boundary
        clock += dt.timedelta(hours=3)
        push_cycle(now=clock)
    for step in range(70):
        for move in cron(fake_odoo, day + dt.timedelta(days=step)):
            issued[move] = day + dt.timedelta(days=step)

    catalog.api_charge.refresh_from_db()
    product = catalog.api_charge.odoo_product_id
    order = order_of(fake_odoo, sub)
    assert billed(fake_odoo, order["id"], product) == frozen_total  # exactly once, to the cent
    for inv in fake_odoo.invoices(order["id"]):
        for line in inv.lines:
            if line.product_id == product:
                assert last_day_of(line.name) < issued[inv.id]  # the window had closed
    names = [ln["name"] for ln in fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]],
                                                                         ["product_id", "=", product]], ["name"])]
    assert len(names) == len(set(names))  # no duplicated line after lost answers


def test_upgrade_is_a_new_subscription_with_its_own_order_and_the_old_order_is_billed_then_closed(
        fake_odoo, catalog):
    """Upgrade on Nov 20 (Lago: now): the old subscription ends at the change with usage 3.00 and its
    prorated arrears fee 49.00 x 19/30 = 31.03 -> one final invoice 34.03, then closed. The new
    subscription (plan Business) has its own order whose only recurring line is Business's."""
    change = dt.datetime(2026, 11, 20, tzinfo=UTC)
    old = catalog.subscription()
    push_cycle(now=at(D(2026, 11, 2)))
    business = Plan.objects.create(service=catalog.service, code="business", name="Business", interval="monthly",
                                   amount=Decimal("99.00"), amount_currency="CAD")
    catalog.rate(old, catalog.api_charge, units="150", amount="3.000000", end=change)
    catalog.fee(old, amount="31.033333", units="0.633333", end=change)
    Subscription.objects.filter(pk=old.pk).update(status="terminated", terminated_at=change)
    new = Subscription.objects.create(
        service=catalog.service, account_link=old.account_link, external_id=old.external_id + "-up", plan=business,
        status="active", started_at=change, subscription_at=change, current_period_start=change,
        current_period_end=WINDOW_END, flat_amount=Decimal("99.00"), currency="CAD")
    odoo_day(fake_odoo, D(2026, 11, 20))
    push_cycle(now=at(D(2026, 11, 20)))
    old_order, new_order = order_of(fake_odoo, old), order_of(fake_odoo, new)
    assert old_order["subscription_state"] == "6_churn"
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(old_order["id"])] == [Decimal("34.03")]
    for order, plan_name in ((old_order, "Pro"), (new_order, "Business")):
        recurring = fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]],
                                                          ["recurring_invoice", "=", True]], ["name"])
        assert [ln["name"] for ln in recurring] == [plan_name]
    assert (new_order["start_date"], new_order["next_invoice_date"]) == ("2026-11-20", "2026-12-01")


def test_terminated_before_its_order_reached_odoo_still_bills_its_final_window(fake_odoo, catalog):
    """Terminated Nov 20 before any push, final window still open: no order yet, nothing finalised. Once
    frozen (3.00) with its fee 31.03: the order is created, invoiced at once (34.03) and closed."""
    end = dt.datetime(2026, 11, 20, tzinfo=UTC)
    sub = catalog.subscription(status="terminated")
    Subscription.objects.filter(pk=sub.pk).update(terminated_at=end)
    usage = catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", state="open", end=end)
    odoo_day(fake_odoo, D(2026, 11, 20))
    push_cycle(now=at(D(2026, 11, 20)))
    assert fake_odoo.records("sale.order") == []
    assert not OdooSyncState.objects.filter(kind=SyncKind.SUBSCRIPTION, final=True).exists()
    RatedUsage.objects.filter(pk=usage.pk).update(state="frozen")
    catalog.fee(sub, amount="31.033333", units="0.633333", end=end)
    push_cycle(now=at(D(2026, 11, 20), 10))
    order = order_of(fake_odoo, sub)
    assert order["subscription_state"] == "6_churn"
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("34.03")]


def test_termination_of_an_advance_plan_credits_the_unused_part_once_then_closes(fake_odoo, catalog):
    """pay_in_advance, calendar: November's fee 49.00 was invoiced at the start. Terminated Nov 23 with no
    usage: metering writes the credit -(49.00 x 8/30) = -13.066667 -> -13.07. The only line left is
    negative: the wizard makes a credit note (out_refund) of 13.07, posted; then the order closes.
    Net billed: 49.00 - 13.07 = 35.93."""
    Plan.objects.filter(pk=catalog.plan.pk).update(pay_in_advance=True)
    sub = catalog.subscription()
    catalog.fee(sub, amount="49.000000")
    odoo_day(fake_odoo, D(2026, 11, 1))
    push_cycle(now=at(D(2026, 11, 1)))
    order = order_of(fake_odoo, sub)
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("49.00")]
    end = dt.datetime(2026, 11, 23, tzinfo=UTC)
    Subscription.objects.filter(pk=sub.pk).update(status="terminated", terminated_at=end)
    catalog.fee(sub, amount="-13.066667", kind="credit", units="-0.266667", start=end)
    odoo_day(fake_odoo, D(2026, 11, 23))
    push_cycle(now=at(D(2026, 11, 23)))
    order = order_of(fake_odoo, sub)
    moves = fake_odoo.invoices(order["id"])
    assert [(m.move_type, m.amount_untaxed) for m in moves] == [("out_invoice", Decimal("49.00")),
                                                                 ("out_refund", Decimal("13.07"))]
    assert fake_odoo.invoiced_totals(order["id"]).untaxed == Decimal("35.93")
    assert order["subscription_state"] == "6_churn"
