"""Lago's lifecycle rules (issue #12): windows by calendar date in a billing timezone,
proration in whole days, currency, price changes, prorated charge minimums.

Driven through the HTTP API and the rating task, with the clock set by the test. Every
figure is worked by hand in the comments (Lago: ``Fees::SubscriptionService``,
``CreditNotes::CreateFromTermination``, ``Fees::CreateTrueUpService``).
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.utils import timezone

from metering import tasks, windows
from metering.models import PlanFee, RatedUsage, Subscription

UTC = dt_timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(utc(2026, 1, 1))
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture(autouse=True)
def _one_rating_task(settings):
    settings.RATING_SHARDS = 1


def make_plan(client, code: str, *, amount_cents: int, pay_in_advance: bool = False, currency: str = "CAD",
              min_amount_cents: int | None = None, interval: str = "monthly") -> None:
    metric = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json")
    if metric.status_code != 200:  # already there
        metric = client.get("/api/v1/billable_metrics/calls")
    charge = {"billable_metric_id": metric.json()["billable_metric"]["lago_id"], "charge_model": "standard",
              "properties": {"amount": "1"}}
    if min_amount_cents is not None:
        charge["min_amount_cents"] = min_amount_cents
    response = client.post("/api/v1/plans", {"plan": {
        "name": code, "code": code, "interval": interval, "amount_cents": amount_cents, "amount_currency": currency,
        "pay_in_advance": pay_in_advance, "charges": [charge]}}, format="json")
    assert response.status_code == 200, response.content


def subscribe(client, plan_code: str, *, external_id: str = "sub_1", customer: str = "cus_1", status: int = 200,
              **extra):
    response = client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": customer, "plan_code": plan_code, "external_id": external_id, **extra,
    }}, format="json")
    assert response.status_code == status, response.content
    return response.json()["subscription"] if status == 200 else response.json()


def upsert_customer(client, status: int = 200, **fields):
    response = client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", **fields}}, format="json")
    assert response.status_code == status, response.content
    return response.json()["customer"] if status == 200 else response.json()


def call(client, at: datetime, n: int, *, external_id: str = "sub_1") -> None:
    response = client.post("/api/v1/events", {"event": {
        "transaction_id": f"tx-{n}", "external_subscription_id": external_id, "code": "calls",
        "timestamp": str(at.timestamp())}}, format="json")
    assert response.status_code == 200, response.content


def rate(clock: Clock, at: datetime) -> None:
    clock.now = at
    tasks.rate_open_windows()


def fees(lago_id: str) -> list[tuple[str, datetime, datetime, Decimal, Decimal]]:
    return [(f.kind, f.window_start, f.window_end, f.units, f.amount)
            for f in PlanFee.objects.filter(subscription_id=lago_id).order_by("window_start", "kind")]


def units(days: int, of: int) -> Decimal:
    return (Decimal(days) / Decimal(of)).quantize(Decimal("0.0000000001"))


def period(lago_id: str) -> tuple[datetime | None, datetime | None]:
    sub = Subscription.objects.get(pk=lago_id)
    return sub.current_period_start, sub.current_period_end


# --------------------------------------------------------------------------- calendar dates


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_calendar_start_on_jan_20_bills_12_of_31_days(api_client, clock, pay_in_advance):
    # 31.00 a month, calendar, started Jan 20 at 15:00 UTC: the first window is
    # [Jan 20 15:00, Feb 1); Lago counts whole dates, Jan 20 to Jan 31 = 12 of January's 31:
    # 31 x 12/31 = 12.00 (an instant ratio would have given 11.375).
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=pay_in_advance)
    clock.now = utc(2026, 1, 20, 15)
    sub = subscribe(api_client, "basic")
    assert period(sub["lago_id"]) == (utc(2026, 1, 20, 15), utc(2026, 2, 1))
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    first = ("subscription", utc(2026, 1, 20, 15), utc(2026, 2, 1), units(12, 31), Decimal("12.000000"))
    if pay_in_advance:  # paid when the window opened, then February's full fee when it opened
        assert fees(sub["lago_id"]) == [first, ("subscription", utc(2026, 2, 1), utc(2026, 3, 1), Decimal(1),
                                                Decimal("31.000000"))]
    else:
        assert fees(sub["lago_id"]) == [first]


def test_jan_31_anniversary_gives_feb_28_then_mar_31(api_client, clock):
    # Anniversary on Jan 31 (10:30 UTC): periods start on the 31st, or the month's last day
    # when shorter (Lago's rule): [Jan 31 10:30, Feb 28), [Feb 28, Mar 31), [Mar 31, Apr 30).
    make_plan(api_client, "basic", amount_cents=3100)
    clock.now = utc(2026, 1, 31, 10, 30)
    sub = subscribe(api_client, "basic", billing_time="anniversary")
    assert period(sub["lago_id"]) == (utc(2026, 1, 31, 10, 30), utc(2026, 2, 28))
    body = api_client.get("/api/v1/subscriptions/sub_1").json()["subscription"]
    assert (body["current_billing_period_started_at"], body["current_billing_period_ending_at"]) == (
        "2026-01-31T10:30:00Z", "2026-02-28T00:00:00Z")
    rate(clock, utc(2026, 2, 28, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 2, 28), utc(2026, 3, 31))
    rate(clock, utc(2026, 3, 31, 0, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 3, 31), utc(2026, 4, 30))
    # Both closed windows are whole periods, though of 28 and 31 days: 31.00 each.
    assert [(f[3], f[4]) for f in fees(sub["lago_id"])] == [(Decimal(1), Decimal("31.000000"))] * 2
    # In a leap year the short month ends on the 29th.
    assert windows.billing_window(interval="monthly", anchor=utc(2028, 1, 31), at=utc(2028, 2, 10)) == (
        utc(2028, 1, 31), utc(2028, 2, 29))


def test_windows_are_local_midnights_in_the_customers_timezone(api_client, clock):
    customer = upsert_customer(api_client, timezone="America/Toronto")
    assert (customer["timezone"], customer["applicable_timezone"]) == ("America/Toronto", "America/Toronto")
    make_plan(api_client, "basic", amount_cents=3100)
    # Jan 20 03:00 UTC is Jan 19 22:00 in Toronto (UTC-5): the window runs to Feb 1 00:00
    # Toronto = 05:00 UTC.
    clock.now = utc(2026, 1, 20, 3)
    sub = subscribe(api_client, "basic")
    assert period(sub["lago_id"]) == (utc(2026, 1, 20, 3), utc(2026, 2, 1, 5))
    call(api_client, utc(2026, 2, 1, 4, 30), 1)  # Jan 31 23:30 in Toronto: January's
    rate(clock, utc(2026, 2, 1, 4, 45))
    january = RatedUsage.objects.get(subscription_id=sub["lago_id"])
    assert (january.state, january.units) == ("open", Decimal(1))
    rate(clock, utc(2026, 2, 1, 5, 0, 5))
    january.refresh_from_db()
    assert january.state == "frozen"
    # Local dates Jan 19-31: 13 of 31 days: 31 x 13/31 = 13.00.
    assert fees(sub["lago_id"]) == [
        ("subscription", utc(2026, 1, 20, 3), utc(2026, 2, 1, 5), units(13, 31), Decimal("13.000000"))]
    assert period(sub["lago_id"]) == (utc(2026, 2, 1, 5), utc(2026, 3, 1, 5))
    # Daylight saving starts on Mar 8: April 1 00:00 in Toronto is 04:00 UTC.
    rate(clock, utc(2026, 3, 1, 5, 0, 5))
    assert period(sub["lago_id"]) == (utc(2026, 3, 1, 5), utc(2026, 4, 1, 4))
    # The customer moves to Tokyo: the subscription keeps the calendar it was created in
    # (no window moves retroactively); a new subscription is billed in Tokyo (00:00 JST = 15:00 UTC).
    assert upsert_customer(api_client, timezone="Asia/Tokyo")["applicable_timezone"] == "Asia/Tokyo"
    rate(clock, utc(2026, 3, 20))
    assert period(sub["lago_id"]) == (utc(2026, 3, 1, 5), utc(2026, 4, 1, 4))
    second = subscribe(api_client, "basic", external_id="sub_2")
    assert period(second["lago_id"]) == (utc(2026, 3, 20), utc(2026, 3, 31, 15))
    assert Subscription.objects.get(pk=second["lago_id"]).billing_timezone == "Asia/Tokyo"
    # A downgrade starts on the date of the window's end in that calendar: Apr 1 in Tokyo.
    make_plan(api_client, "cheap", amount_cents=1000)
    assert subscribe(api_client, "cheap", external_id="sub_2")["downgrade_plan_date"] == "2026-04-01"


def test_billing_timezone_setting_applies_to_customers_without_one(api_client, clock, settings):
    settings.BILLING_TIMEZONE = "America/Toronto"
    customer = upsert_customer(api_client)
    assert (customer["timezone"], customer["applicable_timezone"]) == (None, "America/Toronto")
    make_plan(api_client, "basic", amount_cents=3100)
    clock.now = utc(2026, 1, 20, 3)
    sub = subscribe(api_client, "basic")
    assert period(sub["lago_id"]) == (utc(2026, 1, 20, 3), utc(2026, 2, 1, 5))


def test_an_unknown_timezone_is_refused_as_lago_does(api_client):
    response = upsert_customer(api_client, status=422, timezone="Mars/Olympus_Mons")
    assert response == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                        "error_details": {"timezone": ["invalid_timezone"]}}
    assert api_client.get("/api/v1/customers/cus_1").status_code == 404
    assert upsert_customer(api_client, timezone="Europe/Paris")["timezone"] == "Europe/Paris"
    for bad in ("europe/nowhere", "../" + "UTC", " UTC", "X" * 100):
        assert upsert_customer(api_client, status=422, timezone=bad)["error_details"] == {
            "timezone": ["invalid_timezone"]}
    assert api_client.get("/api/v1/customers/cus_1").json()["customer"]["timezone"] == "Europe/Paris"
    # Absent keeps it; null clears it (the default calendar applies again).
    assert upsert_customer(api_client, name="Acme")["timezone"] == "Europe/Paris"
    cleared = upsert_customer(api_client, timezone=None)
    assert (cleared["timezone"], cleared["applicable_timezone"]) == (None, "UTC")


# --------------------------------------------------------------------------- termination and upgrade


def test_termination_in_arrears_bills_through_the_termination_date(api_client, clock):
    # 31.00 calendar from Jan 1, terminated Jan 20 at 10:00: Jan 1-20 = 20 days: 20.00.
    make_plan(api_client, "basic", amount_cents=3100)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 20, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert fees(sub["lago_id"]) == [
        ("subscription", utc(2026, 1, 1), utc(2026, 1, 20, 10), units(20, 31), Decimal("20.000000"))]


def test_termination_in_advance_credits_the_whole_days_after_the_termination_date(api_client, clock):
    # 31.00 paid for January; terminated Jan 20 at 10:00: Jan 21-31 unused = 11 days: -11.00.
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=True)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 20, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert fees(sub["lago_id"]) == [
        ("subscription", utc(2026, 1, 1), utc(2026, 2, 1), Decimal(1), Decimal("31.000000")),
        ("credit", utc(2026, 1, 20, 10), utc(2026, 2, 1), units(11, 31), Decimal("-11.000000")),
    ]


def test_a_credit_never_exceeds_the_fee_paid(api_client, clock):
    # Started Jan 20 15:00 in advance: 12.00 paid (Jan 20-31). Terminated the same day:
    # Jan 21-31 = 11 days: -11.00 (less than paid; the day of termination is kept).
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=True)
    clock.now = utc(2026, 1, 20, 15)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 20, 18)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert [f[4] for f in fees(sub["lago_id"])] == [Decimal("12.000000"), Decimal("-11.000000")]


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_a_termination_exactly_at_a_window_boundary_bills_no_day_of_the_new_window(api_client, clock,
                                                                                 pay_in_advance):
    # Deliberate difference from Lago (docs/api.md): 31.00 calendar from Jan 1, rating rolled
    # January over at Feb 1 00:00:00, DELETE at that same instant. The customer had no second of
    # February: Lago's "the termination date counts" would bill Feb 1, 31 x 1/28 = 1.107143 (and
    # in advance keep it from the credit); here the window [Feb 1, Feb 1) bills nothing.
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=pay_in_advance)
    sub = subscribe(api_client, "basic")
    rate(clock, utc(2026, 2, 1))
    assert period(sub["lago_id"]) == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    january = ("subscription", utc(2026, 1, 1), utc(2026, 2, 1), Decimal(1), Decimal("31.000000"))
    if pay_in_advance:  # February's advance fee, written when it opened, is credited whole
        assert fees(sub["lago_id"]) == [
            january, ("credit", utc(2026, 2, 1), utc(2026, 3, 1), Decimal(1), Decimal("-31.000000")),
            ("subscription", utc(2026, 2, 1), utc(2026, 3, 1), Decimal(1), Decimal("31.000000"))]
    else:
        assert fees(sub["lago_id"]) == [january]
    assert not RatedUsage.objects.filter(subscription_id=sub["lago_id"], window_start=utc(2026, 2, 1),
                                         amount__gt=0).exists()


def test_an_ending_at_on_a_boundary_ends_with_the_last_full_window(api_client, clock):
    # ending_at Mar 1 00:00: the beat terminates at exactly ending_at, before rating rolls
    # February over: February is billed whole (28 of 28 days = 31.00), March never opens.
    make_plan(api_client, "basic", amount_cents=3100)
    sub = subscribe(api_client, "basic", ending_at="2026-03-01T00:00:00Z")
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    assert Subscription.objects.get(pk=sub["lago_id"]).terminated_at == utc(2026, 3, 1)
    assert [f[1:] for f in fees(sub["lago_id"])] == [
        (utc(2026, 1, 1), utc(2026, 2, 1), Decimal(1), Decimal("31.000000")),
        (utc(2026, 2, 1), utc(2026, 3, 1), Decimal(1), Decimal("31.000000"))]


def test_upgrade_in_arrears_splits_the_period_at_the_day_of_the_change(api_client, clock):
    # starter 31.00 -> pro 62.00 on Jan 20 at 10:00 (arrears, calendar from Jan 1).
    # Old: Jan 1-19 (the day of the change goes to the new plan): 19 x 31/31 = 19.00.
    # New: Jan 20-31: 12 x 62/31 = 24.00. Together 43.00 for January.
    make_plan(api_client, "starter", amount_cents=3100)
    make_plan(api_client, "pro", amount_cents=6200)
    old = subscribe(api_client, "starter")
    clock.now = utc(2026, 1, 20, 10)
    new = subscribe(api_client, "pro")
    assert new["previous_plan_code"] == "starter"
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    assert fees(old["lago_id"]) == [
        ("subscription", utc(2026, 1, 1), utc(2026, 1, 20, 10), units(19, 31), Decimal("19.000000"))]
    assert fees(new["lago_id"]) == [
        ("subscription", utc(2026, 1, 20, 10), utc(2026, 2, 1), units(12, 31), Decimal("24.000000"))]


def test_upgrade_in_advance_credits_from_the_day_of_the_change(api_client, clock):
    # starter 31.00 paid for January; pro 62.00 from Jan 20 at 10:00 (advance).
    # Old credit: Jan 20-31 = 12 days: -12.00. New: Jan 20-31: 12 x 62/31 = 24.00.
    make_plan(api_client, "starter", amount_cents=3100, pay_in_advance=True)
    make_plan(api_client, "pro", amount_cents=6200, pay_in_advance=True)
    old = subscribe(api_client, "starter")
    clock.now = utc(2026, 1, 20, 10)
    new = subscribe(api_client, "pro")
    assert fees(old["lago_id"]) == [
        ("subscription", utc(2026, 1, 1), utc(2026, 2, 1), Decimal(1), Decimal("31.000000")),
        ("credit", utc(2026, 1, 20, 10), utc(2026, 2, 1), units(12, 31), Decimal("-12.000000")),
    ]
    assert fees(new["lago_id"]) == [
        ("subscription", utc(2026, 1, 20, 10), utc(2026, 2, 1), units(12, 31), Decimal("24.000000"))]


# --------------------------------------------------------------------------- currency


def test_a_plan_in_another_currency_than_the_customers_is_refused(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3100)
    make_plan(api_client, "usd_pro", amount_cents=9900, currency="USD")
    subscribe(api_client, "basic")
    mismatch = {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                "error_details": {"currency": ["currencies_does_not_match"]}}
    # Another subscription, and an upgrade of the current one: both refused, nothing changed.
    assert subscribe(api_client, "usd_pro", external_id="sub_2", status=422) == mismatch
    assert subscribe(api_client, "usd_pro", status=422) == mismatch
    assert list(Subscription.objects.values_list("plan__code", "status")) == [("basic", "active")]
    # A customer's first plan sets its currency.
    fresh = subscribe(api_client, "usd_pro", external_id="sub_9", customer="cus_9")
    assert fresh["plan_code"] == "usd_pro"
    assert api_client.get("/api/v1/customers/cus_9").json()["customer"]["currency"] == "USD"


# --------------------------------------------------------------------------- price changes


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_a_plan_price_change_reaches_the_base_fee_from_the_next_window(api_client, clock, pay_in_advance):
    # 31.00 calendar from Jan 1; on Jan 10 the plan goes to 62.00: January keeps 31.00,
    # February's fee is 62.00 (written when it closes in arrears, when it opens in advance).
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=pay_in_advance)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 10)
    assert api_client.put("/api/v1/plans/basic", {"plan": {"amount_cents": 6200}}, format="json").status_code == 200
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    amounts = [(f[1], f[4]) for f in fees(sub["lago_id"])]
    expected = [(utc(2026, 1, 1), Decimal("31.000000")), (utc(2026, 2, 1), Decimal("62.000000"))]
    if pay_in_advance:
        expected.append((utc(2026, 3, 1), Decimal("62.000000")))
    assert amounts == expected


def test_a_price_change_mid_window_keeps_an_advance_credit_at_the_price_paid(api_client, clock):
    # 31.00 paid for January; the plan goes to 62.00 on Jan 10; terminated Jan 20 10:00:
    # the credit is at the price paid: Jan 21-31 = 11 x 31/31 = -11.00 (not -22.00).
    make_plan(api_client, "basic", amount_cents=3100, pay_in_advance=True)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 10)
    assert api_client.put("/api/v1/plans/basic", {"plan": {"amount_cents": 6200}}, format="json").status_code == 200
    clock.now = utc(2026, 1, 20, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert [f[4] for f in fees(sub["lago_id"])] == [Decimal("31.000000"), Decimal("-11.000000")]


# --------------------------------------------------------------------------- charge minimum


def test_a_charge_minimum_is_prorated_over_a_partial_window(api_client, clock):
    # min_amount_cents 3100 (31.00) on a calendar plan started Jan 20 15:00: Jan 20-31 is 12
    # of 31 days, the minimum 31 x 12/31 = 12.00; one call (1.00) rates 12.00.
    make_plan(api_client, "basic", amount_cents=0, min_amount_cents=3100)
    clock.now = utc(2026, 1, 20, 15)
    sub = subscribe(api_client, "basic")
    call(api_client, utc(2026, 1, 21), 1)
    rate(clock, utc(2026, 1, 25))
    assert RatedUsage.objects.get(subscription_id=sub["lago_id"]).amount == Decimal("12.000000")
    usage = api_client.get("/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_1")
    assert usage.json()["customer_usage"]["amount_cents"] == 1200
    # A whole February: the whole minimum, 31.00. Terminated Mar 10 at 10:00: Mar 1-10 = 10
    # of 31 days: 31 x 10/31 = 10.00.
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    february = RatedUsage.objects.get(subscription_id=sub["lago_id"], window_start=utc(2026, 2, 1))
    assert (february.state, february.amount) == ("frozen", Decimal("31.000000"))
    clock.now = utc(2026, 3, 10, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    march = RatedUsage.objects.get(subscription_id=sub["lago_id"], window_start=utc(2026, 3, 1))
    assert (march.state, march.amount) == ("frozen", Decimal("10.000000"))


# --------------------------------------------------------------------------- Lago values not built


@pytest.mark.parametrize("path, root, body, field", [
    ("/api/v1/plans", "plan", {"interval": "semiannual"}, "interval"),
    ("/api/v1/plans", "plan", {"entitlements": [{"feature_code": "seats"}]}, "entitlements"),
    ("/api/v1/billable_metrics", "billable_metric", {"aggregation_type": "weighted_sum_agg"}, "aggregation_type"),
    ("/api/v1/billable_metrics", "billable_metric", {"aggregation_type": "custom_agg"}, "aggregation_type"),
])
def test_lago_values_not_built_are_not_supported_rather_than_invalid(api_client, path, root, body, field):
    base = {"plan": {"name": "p", "code": "p", "interval": "monthly", "amount_cents": 100, "amount_currency": "CAD"},
            "billable_metric": {"name": "m", "code": "m", "aggregation_type": "sum_agg", "field_name": "v"}}[root]
    response = api_client.post(path, {root: {**base, **body}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {field: ["not_supported"]}
    if field != "entitlements":  # a choice: a value Lago does not know either is invalid
        assert api_client.post(path, {root: {**base, field: "bogus"}}, format="json").json()["error_details"] == {
            field: ["value_is_invalid"]}
    assert api_client.post(path, {root: base}, format="json").status_code == 200


@pytest.mark.parametrize("model", ["percentage", "graduated_percentage", "custom", "dynamic"])
def test_lago_charge_models_not_built_are_not_supported(api_client, model):
    metric = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "m", "code": "m", "aggregation_type": "sum_agg", "field_name": "v"}}, format="json").json()
    response = api_client.post("/api/v1/plans", {"plan": {
        "name": "p", "code": "p", "interval": "monthly", "amount_cents": 100, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric["billable_metric"]["lago_id"], "charge_model": model,
                     "properties": {"rate": "1"}}]}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"charge_model": ["not_supported"]}


# --------------------------------------------------------------------------- past usage


@pytest.mark.django_db(transaction=True)
def test_past_usage_lists_the_closed_windows_newest_first_through_the_official_client(
        api_client, other_api_client, api_key, live_server, clock):
    from lago_python_client.client import Client

    make_plan(api_client, "basic", amount_cents=0, pay_in_advance=False)
    clock.now = utc(2026, 1, 1)
    subscribe(api_client, "basic", subscription_at="2026-01-01T00:00:00Z")
    call(api_client, utc(2026, 1, 5), 1)
    call(api_client, utc(2026, 1, 6), 2)
    rate(clock, utc(2026, 2, 1, 1))  # January closes: 2 calls x 1.00
    call(api_client, utc(2026, 2, 3), 3)
    rate(clock, utc(2026, 3, 1, 1))  # February closes: 1 call
    call(api_client, utc(2026, 3, 2), 4)
    rate(clock, utc(2026, 3, 2, 1))  # March is open: current usage, not past

    lago = Client(api_key=api_key, api_url=live_server.url)
    result = lago.customers.past_usage("cus_1", "sub_1")
    periods = result["usage_periods"]
    assert [(str(p.from_datetime)[:10], str(p.to_datetime)[:10], p.amount_cents) for p in periods] == [
        ("2026-02-01", "2026-03-01", 100), ("2026-01-01", "2026-02-01", 200)]
    assert [(c.events_count, c.amount_cents) for c in periods[1].charges_usage] == [(2, 200)]
    assert result["meta"]["total_count"] == 2
    assert len(lago.customers.past_usage("cus_1", "sub_1", {"periods_count": 1})["usage_periods"]) == 1
    assert api_client.get("/api/v1/customers/cus_1/past_usage?external_subscription_id=sub_1"
                          "&billable_metric_code=other").json()["usage_periods"] == []
    # Another service does not see this customer; bad input is a 422, an unknown subscription a 404.
    assert other_api_client.get(
        "/api/v1/customers/cus_1/past_usage?external_subscription_id=sub_1").status_code == 404
    bad = api_client.get("/api/v1/customers/cus_1/past_usage?external_subscription_id=sub_1&periods_count=x")
    assert bad.status_code == 422 and bad.json()["error_details"] == {"periods_count": ["value_is_invalid"]}
    assert api_client.get("/api/v1/customers/cus_1/past_usage?external_subscription_id=nope").json()["code"] \
        == "subscription_not_found"
