"""Lago's "attached" rules through the HTTP API: what a plan or metric with subscriptions can
no longer change (422), and price changes that apply from the next window only."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from metering import rating
from metering.models import RatedUsage, Subscription
from metering.services.catalogue import plan_amount_for_window
from tests.api.conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


def current_window(external_id="sub_1"):
    """(start, end) of the subscription's open window (the month of the real clock: the API
    refuses events stamped in a closed window)."""
    sub = Subscription.objects.get(external_id=external_id)
    return sub.current_period_start, sub.current_period_end


def error_details(response, status=422):
    assert response.status_code == status, response.content
    return response.json()["error_details"]


def post_event(client, tx, when, value, *, code="cpu_seconds", sub="sub_1"):
    response = client.post("/api/v1/events", {"event": {
        "transaction_id": tx, "external_subscription_id": sub, "code": code,
        "timestamp": int(when.timestamp()), "properties": {code: value}}}, format="json")
    assert response.status_code == 200, response.content


def amounts(sub_external_id="sub_1"):
    """{window_start: amount} of the subscription's rated usage."""
    return {row.window_start: row.amount for row in RatedUsage.objects.filter(
        subscription__external_id=sub_external_id).order_by("window_start")}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("field, value", [
    ("code", "cpu"), ("aggregation_type", "max_agg"), ("field_name", "cpu"), ("recurring", True),
    ("rounding_function", "ceil"),
])
def test_a_metric_charged_by_a_plan_with_subscriptions_keeps_what_makes_its_units(api_client, subscription,
                                                                                   field, value):
    response = api_client.put("/api/v1/billable_metrics/cpu_seconds",
                              {"billable_metric": {field: value}}, format="json")
    assert error_details(response) == {field: ["billable_metric_locked"]}
    metric = api_client.get("/api/v1/billable_metrics/cpu_seconds").json()["billable_metric"]
    assert (metric["code"], metric["aggregation_type"], metric["field_name"], metric["recurring"]) == (
        "cpu_seconds", "sum_agg", "cpu_seconds", False)


def test_a_metric_in_use_can_still_be_renamed_and_resent_unchanged(api_client, subscription):
    response = api_client.put("/api/v1/billable_metrics/cpu_seconds", {"billable_metric": {
        "name": "CPU", "description": "cores", "code": "cpu_seconds", "aggregation_type": "sum_agg"}},
        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["billable_metric"]["name"] == "CPU"


def test_a_metric_no_plan_with_subscriptions_charges_is_editable(api_client, catalogue):
    response = api_client.put("/api/v1/billable_metrics/cpu_seconds",
                              {"billable_metric": {"aggregation_type": "max_agg"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["billable_metric"]["aggregation_type"] == "max_agg"


@pytest.mark.parametrize("field, value", [
    ("interval", "yearly"), ("amount_currency", "USD"), ("code", "starter2"), ("pay_in_advance", True),
])
def test_a_plan_with_subscriptions_keeps_its_periods_and_currency(api_client, subscription, field, value):
    response = api_client.put("/api/v1/plans/starter", {"plan": {field: value}}, format="json")
    assert error_details(response) == {field: ["plan_locked"]}
    plan = api_client.get("/api/v1/plans/starter").json()["plan"]
    assert (plan["interval"], plan["amount_currency"], plan["pay_in_advance"]) == ("monthly", "CAD", False)


def test_a_terminated_subscription_still_locks_its_plan(api_client, subscription):
    # Lago's attached_to_subscriptions? counts every subscription, whatever its status:
    # the terminated one's bills were computed with these periods.
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    response = api_client.put("/api/v1/plans/starter", {"plan": {"interval": "weekly"}}, format="json")
    assert error_details(response) == {"interval": ["plan_locked"]}


def test_a_charge_model_of_a_plan_with_subscriptions_is_locked(api_client, subscription, catalogue):
    metric_id = catalogue["charges"][0]["lago_billable_metric_id"]
    response = api_client.put("/api/v1/plans/starter", {"plan": {"charges": [
        {"billable_metric_id": metric_id, "charge_model": "package",
         "properties": {"amount": "1", "package_size": 10}}]}}, format="json")
    assert error_details(response) == {"charge_model": ["plan_locked"]}


def test_a_plan_without_subscriptions_is_editable(api_client, catalogue):
    response = api_client.put("/api/v1/plans/starter", {"plan": {"interval": "yearly", "amount_currency": "USD"}},
                              format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["plan"]["interval"], response.json()["plan"]["amount_currency"]) == ("yearly", "USD")


# --------------------------------------------------------------------------- price changes


def test_a_price_change_mid_window_applies_from_the_next_window(api_client, catalogue):
    """Scenario: CAD 0.0075 per 3,600 cpu-seconds; 7,200 s in window 1 and 7,200 s in window 2.
    Mid-window 1 the price becomes 0.03 per 3,600 s (and the plan 50.00 instead of 10.00).
    Window 1 keeps its terms: 2 x 0.0075 = 0.015, then 3 x 0.0075 = 0.0225 after 3,600 s more;
    window 2: 2 x 0.03 = 0.06."""
    create_subscription(api_client)
    w1, w2 = current_window()
    metric_id = catalogue["charges"][0]["lago_billable_metric_id"]
    post_event(api_client, "w1-1", w1, 7200)
    rating.rate_open_windows(now=w1 + SECOND)
    assert amounts() == {w1: D("0.015")}

    response = api_client.put("/api/v1/plans/starter", {"plan": {"amount_cents": 5000, "charges": [
        {"billable_metric_id": metric_id, "charge_model": "standard",
         "properties": {"amount": "0.03", "unit_batch": 3600}}]}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["charges"][0]["properties"]["amount"] == "0.03"
    assert response.json()["plan"]["amount_cents"] == 5000
    # A second change in the same window: window 1 still keeps its ORIGINAL terms.
    response = api_client.put("/api/v1/plans/starter", {"plan": {"charges": [
        {"billable_metric_id": metric_id, "charge_model": "standard",
         "properties": {"amount": "0.05", "unit_batch": 3600}}]}}, format="json")
    assert response.status_code == 200, response.content

    post_event(api_client, "w1-2", w1 + SECOND, 3600)  # 3 batches in window 1 now
    rating.rate_open_windows(now=w1 + 2 * SECOND)
    assert amounts() == {w1: D("0.0225")}  # 3 x 0.0075, not 3 x 0.05
    sub = Subscription.objects.get(external_id="sub_1")
    assert plan_amount_for_window(subscription=sub, window_start=w1) == D("10")

    rating.rate_open_windows(now=w2 + SECOND)  # window 1 closes, window 2 opens
    post_event(api_client, "w2-1", w2 + DAY, 7200)
    rating.rate_open_windows(now=w2 + 2 * DAY)
    assert amounts() == {w1: D("0.0225"), w2: D("0.1")}  # 2 x 0.05
    sub.refresh_from_db()
    assert plan_amount_for_window(subscription=sub, window_start=w2) == D("50")


def test_a_charge_added_mid_window_bills_from_the_next_window(api_client, catalogue):
    """A 'gb' charge (1.00 per GB) added mid-window: the 5 GB sent in that window bill
    nothing, the 2 GB of the next window bill 2.00."""
    create_subscription(api_client)
    w1, w2 = current_window()
    gb = create_catalogue(api_client, metric_code="gb", plan_code="other", unit_batch=1, amount="1")
    response = api_client.put("/api/v1/plans/starter", {"plan": {"charges": [
        {"billable_metric_id": catalogue["charges"][0]["lago_billable_metric_id"], "charge_model": "standard",
         "properties": {"amount": "0.0075", "unit_batch": 3600}},
        {"billable_metric_id": gb["charges"][0]["lago_billable_metric_id"], "charge_model": "standard",
         "properties": {"amount": "1"}}]}}, format="json")
    assert response.status_code == 200, response.content
    post_event(api_client, "w1-gb", w1, 5, code="gb")
    rating.rate_open_windows(now=w1 + SECOND)
    assert not RatedUsage.objects.filter(charge__metric__code="gb", amount__gt=0).exists()
    usage = api_client.get("/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_1").json()
    assert {c["billable_metric"]["code"]: c["amount_cents"]
            for c in usage["customer_usage"]["charges_usage"]}["gb"] == 0
    rating.rate_open_windows(now=w2 + SECOND)
    post_event(api_client, "w2-gb", w2 + DAY, 2, code="gb")
    rating.rate_open_windows(now=w2 + 2 * DAY)
    gb_rows = {r.window_start: r.amount for r in RatedUsage.objects.filter(charge__metric__code="gb")}
    assert gb_rows == {w2: D("2")}


def test_a_plan_in_use_accepts_its_locked_fields_resent_unchanged(api_client, subscription):
    response = api_client.put("/api/v1/plans/starter", {"plan": {
        "name": "Starter 2", "code": "starter", "interval": "monthly", "amount_currency": "CAD",
        "pay_in_advance": False}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["name"] == "Starter 2"


def test_a_minimum_added_mid_window_applies_from_the_next_window(api_client, catalogue):
    """min_amount_cents 500 (CAD 5.00) added while 7,200 s (0.015) are rated: the open window
    stays 0.015; the next window, without usage, owes the 5.00 minimum."""
    create_subscription(api_client)
    w1, w2 = current_window()
    post_event(api_client, "w1-1", w1, 7200)
    rating.rate_open_windows(now=w1 + SECOND)
    response = api_client.put("/api/v1/plans/starter", {"plan": {"charges": [
        {"billable_metric_id": catalogue["charges"][0]["lago_billable_metric_id"], "charge_model": "standard",
         "properties": {"amount": "0.0075", "unit_batch": 3600}, "min_amount_cents": 500}]}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["charges"][0]["min_amount_cents"] == 500
    rating.rate_open_windows(now=w1 + 2 * SECOND)
    assert amounts() == {w1: D("0.015")}
    rating.rate_open_windows(now=w2 + SECOND)
    assert amounts() == {w1: D("0.015"), w2: D("5")}
