"""Two services, same names everywhere: neither can read, change or bill the other's objects."""
from __future__ import annotations

import time

import pytest

from identity.models import AccountLink
from metering.models import BillableMetric, Plan, Subscription, UsageEvent
from tests.api.conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other_api_client):
    """The other service's catalogue, customer ``cus_1``, subscription ``sub_1`` and one event."""
    create_catalogue(other_api_client)
    create_subscription(other_api_client)
    other_api_client.post("/api/v1/events", {"event": {
        "transaction_id": "their_tx", "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "timestamp": str(int(time.time())), "properties": {"cpu_seconds": 5}}}, format="json")
    return {"customer": AccountLink.objects.get().pk}


READS = [
    "/api/v1/customers/cus_1", "/api/v1/customers/cus_1/subscriptions",
    "/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_1",
    "/api/v1/subscriptions/sub_1", "/api/v1/plans/starter", "/api/v1/billable_metrics/cpu_seconds",
    "/api/v1/events/their_tx",
]


@pytest.mark.parametrize("path", READS)
def test_cannot_read_the_other_services_objects(api_client, theirs, path):
    response = api_client.get(path)
    assert response.status_code == 404, response.content


@pytest.mark.parametrize("path, key", [("/api/v1/customers", "customers"), ("/api/v1/subscriptions", "subscriptions"),
                                       ("/api/v1/plans", "plans"), ("/api/v1/billable_metrics", "billable_metrics")])
def test_lists_are_empty_for_the_other_service(api_client, theirs, path, key):
    body = api_client.get(path).json()
    assert body[key] == [] and body["meta"]["total_count"] == 0


def test_cannot_change_or_delete_the_other_services_objects(api_client, theirs):
    assert api_client.put("/api/v1/subscriptions/sub_1", {"subscription": {"name": "x"}},
                          format="json").status_code == 404
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 404
    assert api_client.delete("/api/v1/customers/cus_1").status_code == 404
    assert api_client.put("/api/v1/plans/starter", {"plan": {"name": "x"}}, format="json").status_code == 404
    assert api_client.delete("/api/v1/plans/starter").status_code == 404
    assert api_client.delete("/api/v1/billable_metrics/cpu_seconds").status_code == 404
    assert Subscription.objects.get().status == "active" and Plan.objects.get().name == "Starter"
    assert AccountLink.objects.get().deleted_at is None


def test_cannot_bill_the_other_services_subscription(api_client, theirs):
    create_catalogue(api_client)  # same metric code in our own service
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "mine", "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "timestamp": None, "properties": {"cpu_seconds": 1}}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"external_subscription_id": ["subscription_not_found"]}
    assert list(UsageEvent.objects.values_list("transaction_id", flat=True)) == ["their_tx"]


def test_cannot_use_the_other_services_plan_or_metric(api_client, theirs):
    response = api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "c", "plan_code": "starter", "external_id": "s"}}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "plan_not_found"
    their_metric = BillableMetric.objects.get()
    response = api_client.post("/api/v1/plans", {"plan": {
        "name": "P", "code": "p", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": str(their_metric.pk), "charge_model": "standard",
                     "properties": {"amount": "1"}}]}}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "billable_metric_not_found"


def test_same_external_ids_are_separate_accounts_per_service(api_client, theirs):
    create_catalogue(api_client)
    own = create_subscription(api_client, external_id="sub_1", customer="cus_1")
    assert Subscription.objects.filter(external_id="sub_1").count() == 2
    assert Subscription.objects.get(pk=own["lago_id"]).service.code == "nexacloud"
    assert AccountLink.objects.filter(external_id="cus_1").count() == 2
    # Upserting our cus_1 never touches theirs.
    api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", "name": "Ours"}}, format="json")
    assert AccountLink.objects.get(pk=theirs["customer"]).external_id == "cus_1"
