"""Whatever JSON arrives, the API answers a Lago-shaped JSON status below 500."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

scalars = st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(
    st.text(max_size=10), children, max_size=4), max_leaves=12)
FIELDS = ["external_id", "name", "email", "currency", "country", "code", "aggregation_type", "field_name",
          "interval", "amount_cents", "amount_currency", "charges", "billable_metric_id", "charge_model",
          "properties", "external_customer_id", "plan_code", "subscription_at", "ending_at", "billing_time",
          "transaction_id", "external_subscription_id", "timestamp", "precise_total_amount_cents"]
objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)

ENDPOINTS = [("post", "/api/v1/customers", "customer"), ("post", "/api/v1/billable_metrics", "billable_metric"),
             ("post", "/api/v1/plans", "plan"), ("put", "/api/v1/plans/starter", "plan"),
             ("post", "/api/v1/subscriptions", "subscription"), ("put", "/api/v1/subscriptions/sub_1", "subscription"),
             ("post", "/api/v1/events", "event"), ("post", "/api/v1/events/batch", "events")]


@pytest.mark.parametrize("method, path, root", ENDPOINTS)
def test_random_bodies_never_cause_a_server_error(api_client, subscription, method, path, root):
    @settings(max_examples=40, suppress_health_check=list(HealthCheck), deadline=None)
    @given(body=objects | json_values, wrap=st.booleans(), as_list=st.booleans())
    def check(body, wrap, as_list):
        payload = {root: [body] if as_list else body} if wrap else body
        response = getattr(api_client, method)(path, json.dumps(payload), content_type="application/json")
        assert response.status_code < 500, response.content
        assert response["Content-Type"] == "application/json"
        assert response.json()

    check()


@pytest.mark.parametrize("value", ["a\x00b", {"k": "v\x00"}])
def test_nul_characters_are_refused_not_crashing(api_client, subscription, value):
    event = {"transaction_id": "t", "external_subscription_id": "sub_1", "code": "cpu_seconds",
             "properties": {"cpu_seconds": 1}}
    if isinstance(value, str):
        event["transaction_id"] = value
    else:
        event["properties"] = {**event["properties"], **value}
    response = api_client.post("/api/v1/events", {"event": event}, format="json")
    assert response.status_code == 422


@pytest.mark.parametrize("query", ["page=abc", "per_page=0", "per_page=100000", "page=-1", "status[]=x"])
def test_bad_query_parameters_are_422(api_client, subscription, query):
    response = api_client.get(f"/api/v1/subscriptions?{query}")
    assert response.status_code == 422 and response.json()["code"] == "validation_errors"
