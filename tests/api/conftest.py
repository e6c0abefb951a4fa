"""Fixtures of the API area: a catalogue, and the official Lago client against a live server."""
from __future__ import annotations

import pytest
from lago_python_client.client import Client

from tests.conftest import make_api_client


@pytest.fixture
def lago(live_server, api_key) -> Client:
    """The official lago-python-client, pointed at this server by its base URL only."""
    return Client(api_key=api_key, api_url=live_server.url)


@pytest.fixture
def other_lago(live_server, other_api_key) -> Client:
    return Client(api_key=other_api_key, api_url=live_server.url)


def create_catalogue(client, *, metric_code="cpu_seconds", plan_code="starter", aggregation="sum_agg",
                     amount="0.0075", unit_batch=3600, free_units=None):
    metric = {"name": "CPU seconds", "code": metric_code, "aggregation_type": aggregation}
    if aggregation != "count_agg":
        metric["field_name"] = metric_code
    response = client.post("/api/v1/billable_metrics", {"billable_metric": metric}, format="json")
    assert response.status_code == 200, response.content
    metric_id = response.json()["billable_metric"]["lago_id"]
    properties = {"amount": amount, "unit_batch": unit_batch}
    if free_units is not None:
        properties["free_units"] = free_units
    response = client.post("/api/v1/plans", {"plan": {
        "name": "Starter", "code": plan_code, "interval": "monthly", "amount_cents": 1000,
        "amount_currency": "CAD", "pay_in_advance": False,
        "charges": [{"billable_metric_id": metric_id, "charge_model": "standard", "properties": properties}],
    }}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["plan"]


def create_subscription(client, *, external_id="sub_1", customer="cus_1", plan_code="starter",
                        subscription_at="2020-01-01T00:00:00Z"):
    response = client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": customer, "plan_code": plan_code, "external_id": external_id,
        "subscription_at": subscription_at,
    }}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["subscription"]


@pytest.fixture
def catalogue(api_client):
    return create_catalogue(api_client)


@pytest.fixture
def subscription(api_client, catalogue):
    return create_subscription(api_client)


__all__ = ["make_api_client"]
