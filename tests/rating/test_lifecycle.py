"""Subscription lifecycle (issue #12): base fees as PlanFee rows, termination that closes
the final window at once, ending_at on beat, upgrade now, downgrade at period end.

Driven through the HTTP API and the Celery tasks, with the clock set by the test
(``django.utils.timezone.now``). Figures worked by hand in the comments.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.utils import timezone

from metering import tasks
from metering.models import PlanFee, RatedUsage, Subscription
from webhooks.models import WebhookEvent


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(utc(2026, 1, 15))
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture(autouse=True)
def _one_rating_task(settings):
    settings.RATING_SHARDS = 1


def make_plan(client, code: str, *, amount_cents: int, pay_in_advance: bool, interval: str = "monthly") -> None:
    metric = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json")
    if metric.status_code != 200:  # already there
        metric = client.get("/api/v1/billable_metrics/calls")
    metric_id = metric.json()["billable_metric"]["lago_id"]
    response = client.post("/api/v1/plans", {"plan": {
        "name": code, "code": code, "interval": interval, "amount_cents": amount_cents, "amount_currency": "CAD",
        "pay_in_advance": pay_in_advance,
        "charges": [{"billable_metric_id": metric_id, "charge_model": "standard", "properties": {"amount": "1"}}],
    }}, format="json")
    assert response.status_code == 200, response.content


def subscribe(client, plan_code: str, *, external_id: str = "sub_1", **extra) -> dict:
    response = client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_1", "plan_code": plan_code, "external_id": external_id, **extra,
    }}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["subscription"]


def call(client, at: datetime, n: int, *, external_id: str = "sub_1") -> None:
    response = client.post("/api/v1/events", {"event": {
        "transaction_id": f"tx-{n}", "external_subscription_id": external_id, "code": "calls",
        "timestamp": int(at.timestamp())}}, format="json")
    assert response.status_code == 200, response.content


def rate(clock: Clock, at: datetime) -> None:
    """The beat's rating run at ``at``."""
    clock.now = at
    tasks.rate_open_windows()


def fees(lago_id: str) -> list[tuple[str, str, str, Decimal, Decimal]]:
    return [(f.kind, f.window_start.date().isoformat(), f.window_end.date().isoformat(), f.units, f.amount)
            for f in PlanFee.objects.filter(subscription_id=lago_id).order_by("window_start", "kind")]


def webhooks(webhook_type: str) -> list[dict]:
    return [json.loads(bytes(e.body))["subscription"]
            for e in WebhookEvent.objects.filter(webhook_type=webhook_type).order_by("created_at")]


D31 = Decimal(31)


def units(days: int, of: int = 31) -> Decimal:
    return (Decimal(days) / Decimal(of)).quantize(Decimal("0.0000000001"))


# --------------------------------------------------------------------------- base fees


def test_advance_plan_prorated_start_full_periods_and_credit_on_termination(api_client, clock):
    # Monthly 30.00 CAD in advance, calendar, started 2026-01-15 00:00 UTC.
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=True)
    sub = subscribe(api_client, "basic")
    # First window Jan 15 - Feb 1: 17 of January's 31 days: 30 x 17/31 = 16.4516129 -> 16.451613.
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-15", "2026-02-01", units(17), Decimal("16.451613"))]
    # Each rollover opens a full window: its fee 30.00 at once.
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    rate(clock, utc(2026, 3, 1, 0, 0, 10))  # re-run: idempotent
    call(api_client, utc(2026, 3, 5), 1)
    # Terminated 2026-03-10 00:00: Lago counts the termination date as used, so the unused
    # days are Mar 11-31 (21 of 31): -(30 x 21/31) = -20.3225806... -> -20.322581.
    clock.now = utc(2026, 3, 10)
    response = api_client.delete("/api/v1/subscriptions/sub_1")
    assert response.status_code == 200
    body = response.json()["subscription"]
    assert body["status"] == "terminated" and body["terminated_at"] == "2026-03-10T00:00:00Z"
    assert body["on_termination_credit_note"] == "credit"
    assert fees(sub["lago_id"]) == [
        ("subscription", "2026-01-15", "2026-02-01", units(17), Decimal("16.451613")),
        ("subscription", "2026-02-01", "2026-03-01", Decimal(1), Decimal("30.000000")),
        ("subscription", "2026-03-01", "2026-04-01", Decimal(1), Decimal("30.000000")),
        ("credit", "2026-03-10", "2026-04-01", units(21), Decimal("-20.322581")),
    ]
    # The final window [Mar 1, Mar 10) was rated and frozen by the DELETE itself: 1 call x 1.00.
    final = RatedUsage.objects.get(subscription_id=sub["lago_id"], window_start=utc(2026, 3, 1))
    assert (final.state, final.window_end, final.units, final.amount) == (
        "frozen", utc(2026, 3, 10), Decimal(1), Decimal("1.000000"))
    assert Subscription.objects.get(pk=sub["lago_id"]).usage_frozen_until == utc(2026, 3, 10)
    # A later rating run changes nothing.
    rate(clock, utc(2026, 4, 1, 0, 0, 5))
    assert len(fees(sub["lago_id"])) == 4


def test_advance_plan_terminated_with_skip_gives_nothing_back(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=True)
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 20)
    response = api_client.delete("/api/v1/subscriptions/sub_1?on_termination_credit_note=skip")
    assert response.json()["subscription"]["on_termination_credit_note"] == "skip"
    assert [f[0] for f in fees(sub["lago_id"])] == ["subscription"]
    assert api_client.delete("/api/v1/subscriptions/sub_1?on_termination_credit_note=bogus").status_code == 422


def test_arrears_plan_fee_when_the_window_closes_and_prorated_final_fee(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    sub = subscribe(api_client, "basic")
    assert fees(sub["lago_id"]) == []  # arrears: nothing when the window opens
    rate(clock, utc(2026, 1, 20))
    assert fees(sub["lago_id"]) == []  # nor while it is open
    rate(clock, utc(2026, 2, 1, 0, 0, 5))  # Jan 15 - Feb 1 closes: 30 x 17/31 = 16.451613
    rate(clock, utc(2026, 3, 1, 0, 0, 5))  # February closes: 30.00
    # Terminated 2026-03-10 00:00: final window Mar 1 - Mar 10; Lago bills through the
    # termination date (Mar 1-10, 10 of 31 days, even at 00:00): 30 x 10/31 = 9.6774193 -> 9.677419.
    clock.now = utc(2026, 3, 10)
    body = api_client.delete("/api/v1/subscriptions/sub_1").json()["subscription"]
    assert body["on_termination_credit_note"] is None  # arrears: nothing to credit (Lago: null)
    assert fees(sub["lago_id"]) == [
        ("subscription", "2026-01-15", "2026-02-01", units(17), Decimal("16.451613")),
        ("subscription", "2026-02-01", "2026-03-01", Decimal(1), Decimal("30.000000")),
        ("subscription", "2026-03-01", "2026-03-10", units(10), Decimal("9.677419")),
    ]


def test_customer_delete_closes_the_final_window_at_once(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    sub = subscribe(api_client, "basic")
    call(api_client, utc(2026, 1, 16), 1)
    clock.now = utc(2026, 1, 22)
    assert api_client.delete("/api/v1/customers/cus_1").status_code == 200
    # Jan 15 - Jan 22 (the termination date counts): 8 of 31 days: 30 x 8/31 = 7.7419354 -> 7.741935;
    # the call frozen.
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-15", "2026-01-22", units(8), Decimal("7.741935"))]
    assert RatedUsage.objects.get(subscription_id=sub["lago_id"]).state == "frozen"


# --------------------------------------------------------------------------- ending_at


def test_ending_at_terminates_on_beat_at_ending_at(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    sub = subscribe(api_client, "basic", ending_at="2026-01-25T00:00:00Z")
    clock.now = utc(2026, 1, 24, 23)
    assert tasks.terminate_ended_subscriptions() == 0
    call(api_client, utc(2026, 1, 24, 22), 1)
    # The beat runs late (00:07): the subscription still ends AT ending_at.
    clock.now = utc(2026, 1, 25, 0, 7)
    assert tasks.terminate_ended_subscriptions() == 1
    assert tasks.terminate_ended_subscriptions() == 0  # idempotent
    row = Subscription.objects.get(pk=sub["lago_id"])
    assert (row.status, row.terminated_at, row.usage_frozen_until) == (
        "terminated", utc(2026, 1, 25), utc(2026, 1, 25))
    [terminated] = webhooks("subscription.terminated")
    assert terminated["lago_id"] == sub["lago_id"] and terminated["terminated_at"] == "2026-01-25T00:00:00Z"
    # Jan 15 - Jan 25 (the ending date counts): 11/31 of 30.00 = 10.645161; the call frozen in the final window.
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-15", "2026-01-25", units(11), Decimal("10.645161"))]
    assert RatedUsage.objects.get(subscription_id=sub["lago_id"]).amount == Decimal("1.000000")


def test_ending_at_is_a_registered_beat_task():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["terminate-ended-subscriptions"]
    assert entry["task"] == "metering.tasks.terminate_ended_subscriptions"
    assert entry["options"]["queue"] == "rating"


# --------------------------------------------------------------------------- plan changes


def test_upgrade_now_terminates_the_old_and_starts_a_new_subscription(api_client, clock):
    # starter 10.00/month in arrears, pro 50.00/month in arrears; calendar from Jan 1.
    make_plan(api_client, "starter", amount_cents=1000, pay_in_advance=False)
    make_plan(api_client, "pro", amount_cents=5000, pay_in_advance=False)
    clock.now = utc(2026, 1, 1)
    old = subscribe(api_client, "starter")
    for n, day in enumerate((3, 5, 9)):
        call(api_client, utc(2026, 1, day), n)
    clock.now = utc(2026, 1, 16)
    new = subscribe(api_client, "pro")
    assert new["lago_id"] != old["lago_id"]
    assert (new["plan_code"], new["previous_plan_code"], new["status"], new["external_id"]) == (
        "pro", "starter", "active", "sub_1")
    assert new["started_at"].startswith("2026-01-16T00:00:00")
    assert new["current_billing_period_started_at"] == "2026-01-16T00:00:00Z"
    assert new["current_billing_period_ending_at"] == "2026-02-01T00:00:00Z"
    # Old: terminated at the change, its window Jan 1 - Jan 16 frozen with its 3 calls,
    # its fee 10 x 15/31 = 4.8387096 -> 4.838710.
    assert fees(old["lago_id"]) == [("subscription", "2026-01-01", "2026-01-16", units(15), Decimal("4.838710"))]
    old_usage = RatedUsage.objects.get(subscription_id=old["lago_id"])
    assert (old_usage.state, old_usage.units) == ("frozen", Decimal(3))
    assert [w["lago_id"] for w in webhooks("subscription.terminated")] == [old["lago_id"]]
    assert [w["lago_id"] for w in webhooks("subscription.started")] == [old["lago_id"], new["lago_id"]]
    # Usage after the change goes to the new subscription; none of the old calls is re-rated.
    call(api_client, utc(2026, 1, 20), 10)
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    new_usage = RatedUsage.objects.get(subscription_id=new["lago_id"], window_start=utc(2026, 1, 16))
    assert (new_usage.state, new_usage.units) == ("frozen", Decimal(1))
    # New: Jan 16 - Feb 1 in arrears, 50 x 16/31 = 25.8064516 -> 25.806452.
    assert fees(new["lago_id"]) == [("subscription", "2026-01-16", "2026-02-01", units(16), Decimal("25.806452"))]
    assert api_client.get("/api/v1/subscriptions/sub_1").json()["subscription"]["lago_id"] == new["lago_id"]


def test_upgrade_of_an_advance_plan_credits_the_old_and_charges_the_new_from_the_change(api_client, clock):
    make_plan(api_client, "starter", amount_cents=3100, pay_in_advance=True)
    make_plan(api_client, "pro", amount_cents=6200, pay_in_advance=True)
    clock.now = utc(2026, 1, 1)
    old = subscribe(api_client, "starter")
    clock.now = utc(2026, 1, 11)
    new = subscribe(api_client, "pro")
    # Old: 31.00 paid for January; 21 of 31 days unused: -(31 x 21/31) = -21.00.
    assert fees(old["lago_id"]) == [
        ("subscription", "2026-01-01", "2026-02-01", Decimal(1), Decimal("31.000000")),
        ("credit", "2026-01-11", "2026-02-01", units(21), Decimal("-21.000000")),
    ]
    # New: Jan 11 - Feb 1 in advance: 62 x 21/31 = 42.00.
    assert fees(new["lago_id"]) == [("subscription", "2026-01-11", "2026-02-01", units(21), Decimal("42.000000"))]


def test_downgrade_waits_for_the_window_end(api_client, clock):
    make_plan(api_client, "starter", amount_cents=1000, pay_in_advance=False)
    make_plan(api_client, "pro", amount_cents=5000, pay_in_advance=False)
    clock.now = utc(2026, 1, 1)
    current = subscribe(api_client, "pro")
    clock.now = utc(2026, 1, 16)
    pending = subscribe(api_client, "starter")
    assert pending["lago_id"] == current["lago_id"] and pending["plan_code"] == "pro"
    assert (pending["next_plan_code"], pending["downgrade_plan_date"]) == ("starter", "2026-02-01")
    # Back to the current plan: the downgrade is canceled.
    assert subscribe(api_client, "pro")["next_plan_code"] is None
    subscribe(api_client, "starter")
    call(api_client, utc(2026, 1, 20), 1)
    # Usage stamped after the boundary, accepted before the swap, belongs to the new plan.
    call(api_client, utc(2026, 2, 1, 0, 0, 1), 2)
    # The rating run at the boundary swaps first: pro ends at Feb 1 (full window, 50.00),
    # starter starts there (previous_plan_code pro).
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    old = Subscription.objects.get(pk=current["lago_id"])
    assert (old.status, old.terminated_at) == ("terminated", utc(2026, 2, 1))
    assert fees(current["lago_id"]) == [("subscription", "2026-01-01", "2026-02-01", Decimal(1), Decimal("50.000000"))]
    new = api_client.get("/api/v1/subscriptions/sub_1").json()["subscription"]
    assert (new["plan_code"], new["previous_plan_code"], new["next_plan_code"]) == ("starter", "pro", None)
    assert new["current_billing_period_started_at"] == "2026-02-01T00:00:00Z"
    assert RatedUsage.objects.get(subscription_id=current["lago_id"]).units == Decimal(1)
    rate(clock, utc(2026, 2, 10))
    assert RatedUsage.objects.get(subscription_id=new["lago_id"]).units == Decimal(1)


# --------------------------------------------------------------------------- grace period


def test_grace_period_keeps_the_window_open_for_late_usage(api_client, clock, settings):
    settings.RATING_GRACE_SECONDS = 3600
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    sub = subscribe(api_client, "basic")
    # 00:30 on Feb 1: January ended but is inside its hour of grace: still open.
    rate(clock, utc(2026, 2, 1, 0, 30))
    call(api_client, utc(2026, 1, 31, 23, 59), 1)  # late usage of January: accepted
    call(api_client, utc(2026, 2, 1, 0, 10), 2)  # February's: waits for its window
    rate(clock, utc(2026, 2, 1, 0, 45))
    january = RatedUsage.objects.get(subscription_id=sub["lago_id"], window_start=utc(2026, 1, 15))
    assert (january.state, january.units) == ("open", Decimal(1))
    assert fees(sub["lago_id"]) == []  # the arrears fee comes with the freeze
    row = Subscription.objects.get(pk=sub["lago_id"])
    assert row.current_period_start == utc(2026, 1, 15)
    # 01:00:05: end + grace has come: January freezes (1 call), February opens with its call.
    rate(clock, utc(2026, 2, 1, 1, 0, 5))
    january.refresh_from_db()
    assert (january.state, january.units, january.window_end) == ("frozen", Decimal(1), utc(2026, 2, 1))
    february = RatedUsage.objects.get(subscription_id=sub["lago_id"], window_start=utc(2026, 2, 1))
    assert (february.state, february.units) == ("open", Decimal(1))
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-15", "2026-02-01", units(17), Decimal("16.451613"))]
    # Now January is closed: a later event stamped in it is refused.
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "tx-late", "external_subscription_id": "sub_1", "code": "calls",
        "timestamp": int(utc(2026, 1, 31, 23, 0).timestamp())}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"timestamp": ["period_closed"]}


def test_termination_during_grace_freezes_everything_at_once(api_client, clock, settings):
    settings.RATING_GRACE_SECONDS = 3600
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    sub = subscribe(api_client, "basic")
    call(api_client, utc(2026, 1, 31, 12), 1)
    call(api_client, utc(2026, 2, 1, 0, 5), 2)
    clock.now = utc(2026, 2, 1, 0, 20)  # inside January's grace
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    rows = {(r.window_start, r.window_end): (r.state, r.units)
            for r in RatedUsage.objects.filter(subscription_id=sub["lago_id"])}
    assert rows == {(utc(2026, 1, 15), utc(2026, 2, 1)): ("frozen", Decimal(1)),
                    (utc(2026, 2, 1), utc(2026, 2, 1, 0, 20)): ("frozen", Decimal(1))}
    # January 16.451613; Feb 1 00:00-00:20 touches Feb 1, one whole day of February's 28
    # (Lago counts days, not minutes): 30 x 1/28 = 1.0714285... -> 1.071429.
    assert [f[4] for f in fees(sub["lago_id"])] == [Decimal("16.451613"), Decimal("1.071429")]


# --------------------------------------------------------------------------- trials


def test_trial_period_is_free_then_ends_with_a_webhook(api_client, clock):
    # 31.00 a month in advance, 10-day trial, calendar, started Jan 1.
    metric = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").json()
    response = api_client.post("/api/v1/plans", {"plan": {
        "name": "trial", "code": "trial", "interval": "monthly", "amount_cents": 3100, "amount_currency": "CAD",
        "pay_in_advance": True, "trial_period": 10,
        "charges": [{"billable_metric_id": metric["billable_metric"]["lago_id"], "charge_model": "standard",
                     "properties": {"amount": "1"}}]}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["trial_period"] == 10.0
    clock.now = utc(2026, 1, 1)
    sub = subscribe(api_client, "trial")
    assert sub["trial_ended_at"] is None
    # January: only Jan 11 - Feb 1 is billed, 21 of 31 days: 31 x 21/31 = 21.00.
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-01", "2026-02-01", units(21), Decimal("21.000000"))]
    clock.now = utc(2026, 1, 10, 23)
    assert tasks.end_trials() == 0
    clock.now = utc(2026, 1, 11, 0, 1)
    assert tasks.end_trials() == 1
    assert tasks.end_trials() == 0  # once
    [ended] = webhooks("subscription.trial_ended")
    assert ended["lago_id"] == sub["lago_id"] and ended["trial_ended_at"] == "2026-01-11T00:00:00Z"
    assert api_client.get("/api/v1/subscriptions/sub_1").json()["subscription"]["trial_ended_at"] == (
        "2026-01-11T00:00:00Z")
    rate(clock, utc(2026, 2, 1, 0, 0, 5))  # February: full fee
    assert fees(sub["lago_id"])[-1][3:] == (Decimal(1), Decimal("31.000000"))


def test_termination_inside_the_trial_credits_nothing(api_client, clock):
    metric = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").json()
    api_client.post("/api/v1/plans", {"plan": {
        "name": "trial", "code": "trial", "interval": "monthly", "amount_cents": 3100, "amount_currency": "CAD",
        "pay_in_advance": False, "trial_period": 10,
        "charges": [{"billable_metric_id": metric["billable_metric"]["lago_id"], "charge_model": "standard",
                     "properties": {"amount": "1"}}]}}, format="json")
    clock.now = utc(2026, 1, 1)
    sub = subscribe(api_client, "trial")
    clock.now = utc(2026, 1, 6)
    api_client.delete("/api/v1/subscriptions/sub_1")
    assert fees(sub["lago_id"]) == []  # arrears, ended inside the trial: no base fee at all


def test_pending_subscription_gets_its_advance_fee_when_it_starts(api_client, clock):
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=True)
    sub = subscribe(api_client, "basic", subscription_at="2026-01-20T00:00:00Z")
    assert sub["status"] == "pending" and fees(sub["lago_id"]) == []
    clock.now = utc(2026, 1, 20, 0, 0, 30)
    assert tasks.activate_due_subscriptions() == 1
    # Jan 20 - Feb 1: 12 of 31 days: 30 x 12/31 = 11.6129032 -> 11.612903.
    assert fees(sub["lago_id"]) == [("subscription", "2026-01-20", "2026-02-01", units(12), Decimal("11.612903"))]


def test_a_second_downgrade_replaces_the_pending_one(api_client, clock):
    make_plan(api_client, "pro", amount_cents=5000, pay_in_advance=False)
    make_plan(api_client, "mid", amount_cents=3000, pay_in_advance=False)
    make_plan(api_client, "small", amount_cents=1000, pay_in_advance=False)
    subscribe(api_client, "pro")
    assert subscribe(api_client, "mid")["next_plan_code"] == "mid"
    assert subscribe(api_client, "small")["next_plan_code"] == "small"
    # Compared per month: 120.00 a year is 10.00 a month, cheaper than pro's 50.00: a downgrade too.
    make_plan(api_client, "yearly", amount_cents=12000, pay_in_advance=False, interval="yearly")
    assert subscribe(api_client, "yearly")["next_plan_code"] == "yearly"


def test_downgrade_with_grace_swaps_at_end_plus_grace_keeping_late_usage(api_client, clock, settings):
    settings.RATING_GRACE_SECONDS = 3600
    make_plan(api_client, "starter", amount_cents=1000, pay_in_advance=False)
    make_plan(api_client, "pro", amount_cents=5000, pay_in_advance=False)
    clock.now = utc(2026, 1, 1)
    current = subscribe(api_client, "pro")
    subscribe(api_client, "starter")  # pending downgrade
    rate(clock, utc(2026, 2, 1, 0, 30))  # inside the grace: no swap yet
    assert Subscription.objects.get(pk=current["lago_id"]).status == "active"
    call(api_client, utc(2026, 1, 31, 23, 50), 1)  # January's late call: still pro's
    call(api_client, utc(2026, 2, 1, 0, 20), 2)  # February's: will be starter's
    rate(clock, utc(2026, 2, 1, 1, 0, 5))
    old = Subscription.objects.get(pk=current["lago_id"])
    assert (old.status, old.terminated_at) == ("terminated", utc(2026, 2, 1))
    assert RatedUsage.objects.get(subscription_id=old.pk).units == Decimal(1)
    new = Subscription.objects.get(status="active")
    assert (new.plan.code, new.previous_subscription_id) == ("starter", old.pk)
    assert RatedUsage.objects.get(subscription_id=new.pk).units == Decimal(1)
