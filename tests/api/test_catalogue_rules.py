"""Refusals of the catalogue and subscription endpoints that protect what is billed."""
from __future__ import annotations

import pytest

from metering import rating
from metering.models import BillableMetric, Charge, Plan, RatedUsage, Subscription
from tests.api.conftest import create_catalogue

pytestmark = pytest.mark.django_db

METRIC = {"name": "GB", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb"}
PLAN = {"name": "Pro", "code": "pro", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD"}
SUBSCRIPTION = {"external_customer_id": "cus_2", "plan_code": "starter", "external_id": "sub_2"}
FILTERS = [{"key": "region", "values": ["eu"]}]


def error_details(response, status=422):
    assert response.status_code == status, response.content
    return response.json()["error_details"]


@pytest.mark.parametrize("path, root, body, field", [
    ("/api/v1/billable_metrics", "billable_metric", {**METRIC, "expression": "event.properties.gb * 2"},
     "expression"),
    ("/api/v1/billable_metrics", "billable_metric", {**METRIC, "filters": FILTERS},
     "filters"),
    ("/api/v1/subscriptions", "subscription", {**SUBSCRIPTION, "plan_overrides": {"amount_cents": 1}},
     "plan_overrides"),
])
def test_features_that_would_change_billing_are_refused_not_ignored(api_client, catalogue, path, root, body,
                                                                     field):
    before = (BillableMetric.objects.count(), Plan.objects.count(), Subscription.objects.count())
    assert error_details(api_client.post(path, {root: body}, format="json")) == {field: ["not_supported"]}
    assert (BillableMetric.objects.count(), Plan.objects.count(), Subscription.objects.count()) == before


def test_refused_features_on_update(api_client, subscription):
    metric = api_client.put("/api/v1/billable_metrics/cpu_seconds",
                            {"billable_metric": {"filters": FILTERS}}, format="json")
    assert error_details(metric) == {"filters": ["not_supported"]}
    sub = api_client.put("/api/v1/subscriptions/sub_1",
                         {"subscription": {"plan_overrides": {"amount_cents": 1}}}, format="json")
    assert error_details(sub) == {"plan_overrides": ["not_supported"]}
    # trial_period is supported since #12 (metering.plan_fees, tests/rating/test_lifecycle.py).
    accepted = api_client.put("/api/v1/plans/starter", {"plan": {"trial_period": 1}}, format="json")
    assert accepted.status_code == 200 and accepted.json()["plan"]["trial_period"] == 1.0
    refused = api_client.put("/api/v1/plans/starter", {"plan": {"trial_period": -1}}, format="json")
    assert refused.status_code == 422 and "trial_period" in error_details(refused)


def test_recurring_is_refused_where_the_aggregation_cannot_carry_over(api_client):
    response = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Seats", "code": "seats", "aggregation_type": "max_agg", "field_name": "seats",
        "recurring": True}}, format="json")
    assert error_details(response) == {"recurring": ["not_compatible_with_aggregation_type"]}


def test_a_metric_in_use_cannot_be_deleted_until_its_subscriptions_end(api_client, subscription):
    response = api_client.delete("/api/v1/billable_metrics/cpu_seconds")
    assert response.status_code == 405 and response.json()["code"] == "billable_metric_in_use"
    assert Charge.objects.filter(metric__code="cpu_seconds").count() == 1

    api_client.delete("/api/v1/subscriptions/sub_1")  # terminated, nothing was rated
    assert api_client.delete("/api/v1/billable_metrics/cpu_seconds").status_code == 200
    assert not BillableMetric.objects.exists() and not Charge.objects.exists()


def test_a_metric_that_was_billed_cannot_be_deleted(api_client, subscription):
    _rate_some_usage(api_client)
    api_client.delete("/api/v1/subscriptions/sub_1")
    response = api_client.delete("/api/v1/billable_metrics/cpu_seconds")
    assert response.status_code == 405 and response.json()["code"] == "billable_metric_in_use"
    assert BillableMetric.objects.filter(code="cpu_seconds").exists()


def test_a_rated_charge_cannot_be_dropped_from_its_plan(api_client, subscription):
    _rate_some_usage(api_client)
    other = create_catalogue(api_client, metric_code="gb", plan_code="other")
    gb = other["charges"][0]["lago_billable_metric_id"]
    response = api_client.put("/api/v1/plans/starter", {"plan": {"amount_cents": 5000, "charges": [
        {"billable_metric_id": gb, "charge_model": "standard", "properties": {"amount": "1"}},
    ]}}, format="json")
    assert error_details(response) == {"charges": ["charge_in_use"]}
    # All or nothing: neither the price nor the charge list changed.
    plan = api_client.get("/api/v1/plans/starter").json()["plan"]
    assert plan["amount_cents"] == 1000
    assert [c["billable_metric_code"] for c in plan["charges"]] == ["cpu_seconds"]


def test_only_a_pending_subscription_can_be_rescheduled(api_client, subscription):
    response = api_client.put("/api/v1/subscriptions/sub_1",
                              {"subscription": {"subscription_at": "2030-01-01T00:00:00Z"}}, format="json")
    assert error_details(response) == {"subscription_at": ["value_is_invalid"]}
    assert Subscription.objects.get(external_id="sub_1").subscription_at.year == 2020


def _rate_some_usage(api_client):
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "tx-1", "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "properties": {"cpu_seconds": 7200}}}, format="json")
    assert response.status_code == 200, response.content
    rating.rate_open_windows()
    assert RatedUsage.objects.filter(amount__gt=0).exists()

