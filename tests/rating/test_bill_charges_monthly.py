"""Lago's ``bill_charges_monthly`` (issue #12): a yearly plan whose usage windows are months while
its base fee's period stays the year. Driven through the HTTP API and the rating task with a set
clock; every figure worked by hand (2026 has 365 days).
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from metering.models import RatedUsage, Subscription
from tests.rating.test_lago_rules import (  # noqa: F401 (fixtures)
    _one_rating_task,
    call,
    clock,
    fees,
    period,
    rate,
    subscribe,
    units,
    utc,
)

pytestmark = pytest.mark.django_db


def yearly_plan(client, code: str, *, amount_cents: int, pay_in_advance: bool = False, monthly: bool = True,
                status: int = 200, **extra) -> dict:
    metric = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json")
    if metric.status_code != 200:
        metric = client.get("/api/v1/billable_metrics/calls")
    response = client.post("/api/v1/plans", {"plan": {
        "name": code, "code": code, "interval": "yearly", "amount_cents": amount_cents, "amount_currency": "CAD",
        "pay_in_advance": pay_in_advance, "bill_charges_monthly": monthly, **extra,
        "charges": [{"billable_metric_id": metric.json()["billable_metric"]["lago_id"], "charge_model": "standard",
                     "properties": {"amount": "1"}}]}}, format="json")
    assert response.status_code == status, response.content
    return response.json()


def usage(lago_id: str) -> list[tuple]:
    return [(r.window_start, r.window_end, r.state, r.amount)
            for r in RatedUsage.objects.filter(subscription_id=lago_id).order_by("window_start")]


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_jan_1_start_bills_usage_every_month_and_the_fee_once_a_year(api_client, clock, pay_in_advance):
    # 120.00 a year, 1.00 a call, calendar from Jan 1 2026: January's 1 call and July's 2 calls are
    # rated in their months; the fee is the year's: 120.00 when it opens (advance) or closes (arrears).
    yearly_plan(api_client, "annual", amount_cents=12000, pay_in_advance=pay_in_advance)
    sub = subscribe(api_client, "annual")
    assert period(sub["lago_id"]) == (utc(2026, 1, 1), utc(2026, 2, 1))
    assert (sub["current_billing_period_started_at"], sub["current_billing_period_ending_at"]) == (
        "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    call(api_client, utc(2026, 1, 20), 1)
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert usage(sub["lago_id"]) == [(utc(2026, 1, 1), utc(2026, 2, 1), "frozen", Decimal("1.000000"))]
    year = ("subscription", utc(2026, 1, 1), utc(2027, 1, 1), Decimal(1), Decimal("120.000000"))
    assert fees(sub["lago_id"]) == ([year] if pay_in_advance else [])  # a month closing writes no fee
    call(api_client, utc(2026, 7, 3), 2)
    call(api_client, utc(2026, 7, 31, 23), 3)
    rate(clock, utc(2026, 12, 1, 0, 0, 5))
    assert fees(sub["lago_id"]) == ([year] if pay_in_advance else [])
    rate(clock, utc(2027, 1, 1, 0, 0, 5))
    closed = [(start, amount) for start, _, state, amount in usage(sub["lago_id"]) if state == "frozen"]
    assert closed == [(utc(2026, 1, 1), Decimal("1.000000")), (utc(2026, 7, 1), Decimal("2.000000"))]
    next_year = ("subscription", utc(2027, 1, 1), utc(2028, 1, 1), Decimal(1), Decimal("120.000000"))
    assert fees(sub["lago_id"]) == ([year, next_year] if pay_in_advance else [year])
    assert period(sub["lago_id"]) == (utc(2027, 1, 1), utc(2027, 2, 1))


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_mar_15_calendar_start_prorates_the_year_and_bills_march_from_the_15th(api_client, clock, pay_in_advance):
    # Calendar from Mar 15 2026: the fee's period is [Mar 15, Jan 1 2027), Mar 15 - Dec 31 = 17 + 30 +
    # 31 + 30 + 31 + 31 + 30 + 31 + 30 + 31 = 292 of 365 days: 120 x 292/365 = 96.00 (units 0.8);
    # the first usage window is [Mar 15, Apr 1), then whole months.
    yearly_plan(api_client, "annual", amount_cents=12000, pay_in_advance=pay_in_advance)
    clock.now = utc(2026, 3, 15, 9)
    sub = subscribe(api_client, "annual")
    assert period(sub["lago_id"]) == (utc(2026, 3, 15, 9), utc(2026, 4, 1))
    first = ("subscription", utc(2026, 3, 15, 9), utc(2027, 1, 1), units(292, 365), Decimal("96.000000"))
    assert fees(sub["lago_id"]) == ([first] if pay_in_advance else [])
    rate(clock, utc(2026, 4, 1, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 4, 1), utc(2026, 5, 1))
    rate(clock, utc(2027, 1, 1, 0, 0, 5))
    full = ("subscription", utc(2027, 1, 1), utc(2028, 1, 1), Decimal(1), Decimal("120.000000"))
    assert fees(sub["lago_id"]) == ([first, full] if pay_in_advance else [first])


def test_anniversary_months_count_from_the_start_date_and_the_year_from_it_too(api_client, clock):
    # Anniversary from Mar 15 2026: months [Mar 15, Apr 15), [Apr 15, May 15)...; the fee's year is
    # [Mar 15 2026, Mar 15 2027): 120.00, written (arrears) when the month ending Mar 15 2027 closes.
    yearly_plan(api_client, "annual", amount_cents=12000)
    clock.now = utc(2026, 3, 15, 9)
    sub = subscribe(api_client, "annual", billing_time="anniversary")
    assert period(sub["lago_id"]) == (utc(2026, 3, 15, 9), utc(2026, 4, 15))
    rate(clock, utc(2027, 2, 15, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2027, 2, 15), utc(2027, 3, 15)) and fees(sub["lago_id"]) == []
    rate(clock, utc(2027, 3, 15, 0, 0, 5))
    assert fees(sub["lago_id"]) == [("subscription", utc(2026, 3, 15, 9), utc(2027, 3, 15), Decimal(1),
                                     Decimal("120.000000"))]


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_termination_mid_year_bills_the_last_month_and_prorates_the_year(api_client, clock, pay_in_advance):
    # From Jan 1, terminated Jul 10 10:00. Usage: June closed on Jul 1, July [Jul 1, Jul 10 10:00) frozen at
    # once. Fee: Jan 1 - Jul 10 = 31+28+31+30+31+30+10 = 191 days: arrears 120 x 191/365 = 62.794521;
    # advance: 120.00 paid, Jul 11 - Dec 31 = 174 days credited, -(120 x 174/365) = -57.205479 (net 62.794521).
    yearly_plan(api_client, "annual", amount_cents=12000, pay_in_advance=pay_in_advance)
    sub = subscribe(api_client, "annual")
    call(api_client, utc(2026, 6, 30, 12), 1)
    rate(clock, utc(2026, 7, 1, 0, 0, 5))
    call(api_client, utc(2026, 7, 9), 2)
    clock.now = utc(2026, 7, 10, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert [(s, e, st, a) for s, e, st, a in usage(sub["lago_id"]) if a] == [
        (utc(2026, 6, 1), utc(2026, 7, 1), "frozen", Decimal("1.000000")),
        (utc(2026, 7, 1), utc(2026, 7, 10, 10), "frozen", Decimal("1.000000"))]
    if pay_in_advance:
        assert fees(sub["lago_id"]) == [
            ("subscription", utc(2026, 1, 1), utc(2027, 1, 1), Decimal(1), Decimal("120.000000")),
            ("credit", utc(2026, 7, 10, 10), utc(2027, 1, 1), units(174, 365), Decimal("-57.205479"))]
    else:
        assert fees(sub["lago_id"]) == [
            ("subscription", utc(2026, 1, 1), utc(2026, 7, 10, 10), units(191, 365), Decimal("62.794521"))]


def test_upgrade_mid_year_splits_the_year_at_the_day_of_the_change(api_client, clock):
    # basic 120.00/year -> pro 240.00/year (both billing charges monthly, arrears) on Jul 10 10:00.
    # basic: Jan 1 - Jul 9 = 190 days, 120 x 190/365 = 62.465753; its July usage [Jul 1, Jul 10 10:00)
    # stays with it. pro: [Jul 10 10:00, Aug 1) then months; its year Jul 10 - Dec 31 = 175 days,
    # 240 x 175/365 = 115.068493, written when December closes.
    yearly_plan(api_client, "basic", amount_cents=12000)
    yearly_plan(api_client, "pro", amount_cents=24000)
    old = subscribe(api_client, "basic")
    call(api_client, utc(2026, 7, 2), 1)
    rate(clock, utc(2026, 7, 10, 9))
    clock.now = utc(2026, 7, 10, 10)
    new = subscribe(api_client, "pro")
    assert new["lago_id"] != old["lago_id"] and new["previous_plan_code"] == "basic"
    assert fees(old["lago_id"]) == [
        ("subscription", utc(2026, 1, 1), utc(2026, 7, 10, 10), units(190, 365), Decimal("62.465753"))]
    assert [a for s, e, st, a in usage(old["lago_id"]) if s == utc(2026, 7, 1)] == [Decimal("1.000000")]
    assert period(new["lago_id"]) == (utc(2026, 7, 10, 10), utc(2026, 8, 1))
    call(api_client, utc(2026, 7, 20), 2)
    rate(clock, utc(2027, 1, 1, 0, 0, 5))
    assert fees(new["lago_id"]) == [
        ("subscription", utc(2026, 7, 10, 10), utc(2027, 1, 1), units(175, 365), Decimal("115.068493"))]
    assert [(s, a) for s, e, st, a in usage(new["lago_id"]) if a] == [(utc(2026, 7, 10, 10), Decimal("1.000000"))]


def test_a_downgrade_waits_for_the_end_of_the_year(api_client, clock):
    # 120.00/year -> 60.00/year requested Mar 10: months keep rolling; the plan changes on Jan 1 2027.
    yearly_plan(api_client, "basic", amount_cents=12000)
    yearly_plan(api_client, "lite", amount_cents=6000)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 3, 10)
    pending = subscribe(api_client, "lite")
    assert (pending["lago_id"], pending["next_plan_code"], pending["downgrade_plan_date"]) == (
        sub["lago_id"], "lite", "2027-01-01")
    rate(clock, utc(2026, 4, 1, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 4, 1), utc(2026, 5, 1))
    assert Subscription.objects.get(pk=sub["lago_id"]).status == "active"
    rate(clock, utc(2026, 12, 15))  # the months roll up to December, the last of the year
    assert period(sub["lago_id"]) == (utc(2026, 12, 1), utc(2027, 1, 1))
    rate(clock, utc(2027, 1, 1, 0, 0, 5))  # each run swaps due downgrades first
    old = Subscription.objects.get(pk=sub["lago_id"])
    assert (old.status, old.terminated_at) == ("terminated", utc(2027, 1, 1))
    assert fees(sub["lago_id"]) == [("subscription", utc(2026, 1, 1), utc(2027, 1, 1), Decimal(1),
                                     Decimal("120.000000"))]
    successor = Subscription.objects.get(previous_subscription_id=sub["lago_id"])
    assert (successor.plan.code, successor.current_period_start, successor.current_period_end) == (
        "lite", utc(2027, 1, 1), utc(2027, 2, 1))


def test_the_flag_is_lagos_on_the_wire_and_locked_once_attached(api_client, clock):
    plan = yearly_plan(api_client, "annual", amount_cents=12000)["plan"]
    assert (plan["interval"], plan["bill_charges_monthly"]) == ("yearly", True)
    monthly = api_client.post("/api/v1/plans", {"plan": {
        "name": "m", "code": "m", "interval": "monthly", "amount_cents": 100, "amount_currency": "CAD",
        "bill_charges_monthly": True}}, format="json")
    assert monthly.json()["plan"]["bill_charges_monthly"] is None  # Lago: only yearly plans have it
    refused = yearly_plan(api_client, "committed", amount_cents=12000, status=422,
                          minimum_commitment={"amount_cents": 50000})
    assert refused["error_details"] == {"minimum_commitment": ["not_supported"]}
    subscribe(api_client, "annual")
    locked = api_client.put("/api/v1/plans/annual", {"plan": {"bill_charges_monthly": False}}, format="json")
    assert locked.status_code == 422 and locked.json()["error_details"] == {"bill_charges_monthly": ["plan_locked"]}
