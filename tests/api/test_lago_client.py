"""The official lago-python-client (pinned 1.55.0) drives every endpoint against a live server.

Only the base URL differs from a Lago deployment: ``Client(api_key=..., api_url=live_server.url)``.
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Event,
    Plan,
    Subscription,
)

from metering.models import UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)


def make_catalogue(lago):
    metric = lago.billable_metrics.create(BillableMetric(
        name="CPU seconds", code="cpu_seconds", aggregation_type="sum_agg", field_name="cpu_seconds"))
    plan = lago.plans.create(Plan(
        name="Starter", code="starter", interval="monthly", amount_cents=1000, amount_currency="CAD",
        pay_in_advance=False,
        charges=Charges(__root__=[Charge(billable_metric_id=metric.lago_id, charge_model="standard",
                                         properties={"amount": "0.0075", "unit_batch": 3600,
                                                     "free_units": "3600"})]),
    ))
    return metric, plan


def test_catalogue_crud_through_the_client(lago):
    metric, plan = make_catalogue(lago)
    assert metric.code == "cpu_seconds" and metric.filters.__root__ == []
    assert plan.amount_cents == 1000
    charge = plan.charges.__root__[0]
    assert charge.billable_metric_code == "cpu_seconds"
    assert charge.properties == {"amount": "0.0075", "unit_batch": 3600, "free_units": 3600}

    assert lago.billable_metrics.find("cpu_seconds").lago_id == metric.lago_id
    assert [m.code for m in lago.billable_metrics.find_all()["billable_metrics"]] == ["cpu_seconds"]
    updated = lago.billable_metrics.update(BillableMetric(name="CPU time"), "cpu_seconds")
    assert updated.name == "CPU time"

    assert lago.plans.find("starter").lago_id == plan.lago_id
    listing = lago.plans.find_all({"per_page": 1})
    assert [p.code for p in listing["plans"]] == ["starter"] and listing["meta"]["total_count"] == 1
    repriced = lago.plans.update(Plan(amount_cents=1500, charges=Charges(__root__=[
        Charge(billable_metric_id=metric.lago_id, charge_model="package",
               properties={"amount": "5.00", "package_size": 1000, "free_units": 100})])), "starter")
    assert repriced.amount_cents == 1500
    assert repriced.charges.__root__[0].properties == {"amount": "5", "free_units": 100, "package_size": 1000}

    lago.plans.destroy("starter")
    with pytest.raises(LagoApiError) as missing:
        lago.plans.find("starter")
    assert missing.value.status_code == 404 and missing.value.response["code"] == "plan_not_found"
    lago.billable_metrics.destroy("cpu_seconds")
    assert lago.billable_metrics.find_all()["billable_metrics"] == []


def test_customer_lifecycle_through_the_client(lago):
    created = lago.customers.create(Customer(external_id="cus_1", name="Acme", email="Billing@Acme.test",
                                             currency="CAD", country="CA"))
    assert created.external_id == "cus_1" and created.email == "Billing@Acme.test"
    upserted = lago.customers.create(Customer(external_id="cus_1", name="Acme Inc."))
    assert upserted.lago_id == created.lago_id and upserted.name == "Acme Inc."
    assert lago.customers.find("cus_1").name == "Acme Inc."
    lago.customers.create(Customer(external_id="cus_2", name="Beta"))
    page = lago.customers.find_all({"per_page": 1, "page": 2})
    assert len(page["customers"]) == 1 and page["meta"]["total_count"] == 2 and page["meta"]["prev_page"] == 1
    assert [c.external_id for c in lago.customers.find_all({"search_term": "beta"})["customers"]] == ["cus_2"]
    lago.customers.destroy("cus_2")
    with pytest.raises(LagoApiError) as gone:
        lago.customers.find("cus_2")
    assert gone.value.status_code == 404 and gone.value.response["code"] == "customer_not_found"


def test_subscription_lifecycle_and_usage_through_the_client(lago, monkeypatch):
    make_catalogue(lago)
    subscription = lago.subscriptions.create(Subscription(
        external_customer_id="cus_new", plan_code="starter", external_id="deployment-1",
        subscription_at="2024-01-01T00:00:00Z"))
    assert subscription.status == "active" and subscription.external_customer_id == "cus_new"
    assert lago.customers.find("cus_new").lago_id == subscription.lago_customer_id  # auto-created
    again = lago.subscriptions.create(Subscription(
        external_customer_id="cus_new", plan_code="starter", external_id="deployment-1"))
    assert again.lago_id == subscription.lago_id

    renamed = lago.subscriptions.update(Subscription(name="Main deployment"), "deployment-1")
    assert renamed.name == "Main deployment"
    assert lago.subscriptions.find("deployment-1").name == "Main deployment"
    listed = lago.subscriptions.find_all({"external_customer_id": "cus_new"})
    assert [s.external_id for s in listed["subscriptions"]] == ["deployment-1"]

    now = int(time.time())
    created = lago.events.create(Event(transaction_id="tx-1", external_subscription_id="deployment-1",
                                       code="cpu_seconds", timestamp=now, properties={"cpu_seconds": 7200}))
    assert created.transaction_id == "tx-1" and created.lago_subscription_id == subscription.lago_id
    lago.events.batch_create(BatchEvent(events=[
        Event(transaction_id=f"tx-b{i}", external_subscription_id="deployment-1", code="cpu_seconds",
              timestamp=str(now), properties={"cpu_seconds": "1800.5"}) for i in range(3)]))
    assert lago.events.find("tx-b2").properties == {"cpu_seconds": "1800.5"}
    assert UsageEvent.objects.count() == 4

    usage = lago.customers.current_usage("cus_new", "deployment-1")
    charge_usage = usage.charges_usage[0]
    assert Decimal(charge_usage.units) == Decimal("12601.5")
    # (12601.5 - 3600 free) / 3600 * 0.0075 = 0.018753125 -> 0.018753 -> 2 cents
    assert charge_usage.amount_cents == 2 and usage.currency == "CAD"

    # Python 1.55.0 sends nested lists without an Authorization header: refused like Lago (401).
    with pytest.raises(LagoApiError) as unauthenticated:
        lago.customer_subscriptions.find_all("cus_new")
    assert unauthenticated.value.status_code == 401
    # With the header the client's own code path works unchanged.
    import lago_python_client.mixins as mixins
    from lago_python_client.services.request import make_headers

    original = mixins.send_get_request
    monkeypatch.setattr(mixins, "send_get_request", lambda url, **kw: original(
        url, **{**kw, "headers": kw.get("headers") or make_headers(api_key=lago.api_key)}))
    nested = lago.customer_subscriptions.find_all("cus_new")
    assert [s.external_id for s in nested["subscriptions"]] == ["deployment-1"]

    terminated = lago.subscriptions.destroy("deployment-1")
    assert terminated.status == "terminated" and terminated.terminated_at
    with pytest.raises(LagoApiError) as no_usage:
        lago.customers.current_usage("cus_new", "deployment-1")
    assert no_usage.value.status_code == 405 and no_usage.value.response["code"] == "no_active_subscription"
    assert lago.subscriptions.find("deployment-1", {"status": "terminated"}).status == "terminated"


def test_client_sees_lago_error_bodies(lago):
    make_catalogue(lago)
    lago.subscriptions.create(Subscription(external_customer_id="c", plan_code="starter", external_id="s",
                                           subscription_at="2024-01-01T00:00:00Z"))
    with pytest.raises(LagoApiError) as unknown_metric:
        lago.events.create(Event(transaction_id="t", external_subscription_id="s", code="nope",
                                 timestamp=None, properties=None))
    assert unknown_metric.value.status_code == 422
    assert unknown_metric.value.response["error_details"] == {"code": ["billable_metric_not_found"]}
    with pytest.raises(LagoApiError) as iso_timestamp:
        lago.events.create(Event(transaction_id="t", external_subscription_id="s", code="cpu_seconds",
                                 timestamp="2024-05-01T00:00:00Z", properties={"cpu_seconds": 1}))
    assert iso_timestamp.value.response["error_details"] == {"timestamp": ["invalid_format"]}
