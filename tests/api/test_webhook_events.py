"""Customer and subscription changes write their webhook events in the same transaction."""
from __future__ import annotations

import json

import pytest

from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def emitted():
    return [(e.webhook_type, json.loads(bytes(e.body))) for e in WebhookEvent.objects.order_by("created_at")]


def test_customer_and_subscription_lifecycle_events(api_client, catalogue):
    api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", "name": "Acme"}}, format="json")
    api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", "name": "Acme"}}, format="json")
    api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", "name": "Acme 2"}}, format="json")
    api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_1", "plan_code": "starter", "external_id": "sub_1"}}, format="json")
    api_client.put("/api/v1/subscriptions/sub_1", {"subscription": {"name": "Main"}}, format="json")
    api_client.delete("/api/v1/subscriptions/sub_1")
    events = emitted()
    assert [t for t, _ in events] == ["customer.created", "customer.updated", "subscription.started",
                                      "subscription.updated", "subscription.terminated"]
    assert events[1][1]["customer"]["name"] == "Acme 2"
    assert events[1][1]["object_type"] == "customer"
    assert events[-1][1]["subscription"]["status"] == "terminated"
    assert events[-1][1]["subscription"]["external_customer_id"] == "cus_1"


def test_a_rejected_write_emits_nothing(api_client, catalogue):
    response = api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_1", "plan_code": "missing", "external_id": "sub_1"}}, format="json")
    assert response.status_code == 404
    assert emitted() == []
