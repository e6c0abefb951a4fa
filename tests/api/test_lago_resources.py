"""The Lago resources added for parity, driven by the official client where it has them:
plan charges and metadata, DELETE /plans as Lago, GET /events and estimate_fees."""
from __future__ import annotations

import time

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, Charge, Event

from metering import lifecycle, tasks
from metering.models import Plan, RatedUsage, Subscription, SubscriptionStatus
from webhooks.models import WebhookEvent

from .conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def add_metric(lago, code="api_calls"):
    return lago.billable_metrics.create(BillableMetric(name="API calls", code=code, aggregation_type="count_agg"))


def test_plan_charges_through_the_client(lago, api_client):
    create_catalogue(api_client)
    metric = add_metric(lago)
    # The client's nested find_all sends no Authorization header (docs/api.md): 401, as Lago.
    with pytest.raises(LagoApiError) as keyless:
        lago.plan_charges.find_all("starter")
    assert keyless.value.status_code == 401
    raw = api_client.get("/api/v1/plans/starter/charges").json()
    assert [c["code"] for c in raw["charges"]] == ["cpu_seconds"] and raw["meta"]["total_count"] == 1

    created = lago.plan_charges.create("starter", Charge(
        billable_metric_id=metric.lago_id, charge_model="package",
        properties={"amount": "2.50", "package_size": 100, "free_units": 0}))
    assert created.code == "api_calls" and created.charge_model == "package"
    assert created.properties == {"amount": "2.5", "package_size": 100, "free_units": 0}
    assert lago.plan_charges.find("starter", "api_calls").lago_id == created.lago_id
    assert {c["code"] for c in api_client.get("/api/v1/plans/starter").json()["plan"]["charges"]} == {
        "cpu_seconds", "api_calls"}

    updated = lago.plan_charges.update("starter", "api_calls", Charge(properties={
        "amount": "3", "package_size": 50, "free_units": 10}))
    assert updated.properties == {"amount": "3", "package_size": 50, "free_units": 10}
    assert updated.lago_id == created.lago_id  # the same charge, changed

    with pytest.raises(LagoApiError) as duplicate:
        lago.plan_charges.create("starter", Charge(billable_metric_id=metric.lago_id, charge_model="standard",
                                                   properties={"amount": "1"}))
    assert duplicate.value.status_code == 422

    deleted = lago.plan_charges.destroy("starter", "api_calls")
    assert deleted.code == "api_calls"
    with pytest.raises(LagoApiError) as missing:
        lago.plan_charges.find("starter", "api_calls")
    assert missing.value.status_code == 404 and missing.value.response["code"] == "charge_not_found"
    with pytest.raises(LagoApiError) as no_plan:
        lago.plan_charges.find("nope", "cpu_seconds")
    assert no_plan.value.response["code"] == "plan_not_found"


def test_a_charge_with_rated_usage_is_not_removed(api_client, subscription):
    sub = Subscription.objects.get(external_id="sub_1")
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "t1", "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "properties": {"cpu_seconds": 7200}}}, format="json")
    assert response.status_code == 200, response.content
    from metering import rating
    rating.rate_subscription(subscription_id=sub.id)
    assert RatedUsage.objects.filter(subscription=sub).exists()
    refused = api_client.delete("/api/v1/plans/starter/charges/cpu_seconds")
    assert refused.status_code == 422 and refused.json()["error_details"] == {"charges": ["charge_in_use"]}
    assert api_client.get("/api/v1/plans/starter/charges/cpu_seconds").status_code == 200


def test_plan_metadata_through_the_client(lago, api_client):
    create_catalogue(api_client)
    assert lago.plans.replace_metadata("starter", {"tier": "gold", "region": "ca"}) == {
        "tier": "gold", "region": "ca"}
    assert lago.plans.merge_metadata("starter", {"region": None, "seats": "5"}) == {
        "tier": "gold", "region": None, "seats": "5"}
    assert lago.plans.find("starter").metadata == {"tier": "gold", "region": None, "seats": "5"}
    assert lago.plans.delete_metadata_key("starter", "tier") == {"region": None, "seats": "5"}
    assert lago.plans.replace_metadata("starter", {"only": "this"}) == {"only": "this"}
    assert lago.plans.delete_all_metadata("starter") is None
    with pytest.raises(LagoApiError) as no_metadata:
        lago.plans.delete_metadata_key("starter", "only")
    assert no_metadata.value.status_code == 404 and no_metadata.value.response["code"] == "metadata_not_found"
    bad = api_client.post("/api/v1/plans/starter/metadata", {"metadata": {"n": 1}}, format="json")
    assert bad.status_code == 422 and bad.json()["error_details"] == {"metadata": ["value_is_invalid"]}
    # set with the plan itself too
    updated = api_client.put("/api/v1/plans/starter", {"plan": {"metadata": {"k": "v"}}}, format="json")
    assert updated.json()["plan"]["metadata"] == {"k": "v"}


def test_deleting_a_plan_ends_its_subscriptions_then_discards_it(lago, api_client):
    create_catalogue(api_client)
    create_subscription(api_client, external_id="sub_live")
    create_subscription(api_client, external_id="sub_later", subscription_at="2999-01-01T00:00:00Z")
    assert Subscription.objects.get(external_id="sub_later").status == SubscriptionStatus.PENDING

    pending = lago.plans.destroy("starter")
    assert pending.code == "starter"  # the client's PlanResponse has no pending_deletion; the wire does
    assert api_client.get("/api/v1/plans/starter").json()["plan"]["pending_deletion"] is True
    deleted_event = WebhookEvent.objects.get(webhook_type="plan.deleted")
    assert deleted_event.object_type == "plan"
    # while pending: still listed (Lago), but it takes no new subscription
    assert [p.code for p in lago.plans.find_all()["plans"]] == ["starter"]
    refused = api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_2", "plan_code": "starter", "external_id": "sub_new"}}, format="json")
    assert refused.status_code == 404 and refused.json()["code"] == "plan_not_found"

    assert tasks.finish_plan_deletions() == 1  # what the queued task (and every rating run) does
    live = Subscription.objects.get(external_id="sub_live")
    assert live.status == SubscriptionStatus.TERMINATED and live.terminated_at is not None
    assert Subscription.objects.get(external_id="sub_later").status == SubscriptionStatus.CANCELED
    assert WebhookEvent.objects.filter(webhook_type="subscription.terminated").count() == 1
    assert WebhookEvent.objects.filter(webhook_type="subscription.canceled").count() == 1
    with pytest.raises(LagoApiError) as gone:
        lago.plans.find("starter")
    assert gone.value.response["code"] == "plan_not_found"
    assert lago.plans.find_all()["plans"] == []
    # kept for the bills that reference it; its code is free again
    assert Plan.objects.filter(code="starter", deleted_at__isnull=False).exists()
    create_catalogue(api_client, metric_code="cpu_seconds_2")
    assert api_client.get("/api/v1/plans/starter").json()["plan"]["pending_deletion"] is False
    assert lifecycle.finish_plan_deletions() == 0  # idempotent


def test_list_events_scoped_and_filtered(api_client, other_api_client, subscription):
    base = int(time.time()) - 60
    for i in range(3):
        response = api_client.post("/api/v1/events", {"event": {
            "transaction_id": f"t{i}", "external_subscription_id": "sub_1", "code": "cpu_seconds",
            "timestamp": base + i, "properties": {"cpu_seconds": i + 1}}}, format="json")
        assert response.status_code == 200, response.content
    listing = api_client.get("/api/v1/events?per_page=2").json()
    assert [e["transaction_id"] for e in listing["events"]] == ["t2", "t1"]
    assert listing["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 2,
                               "total_count": 3}
    assert listing["events"][0]["properties"] == {"cpu_seconds": 3}
    assert api_client.get("/api/v1/events?code=other").json()["events"] == []
    assert len(api_client.get("/api/v1/events?external_subscription_id=sub_1").json()["events"]) == 3
    from_instant = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 1))
    assert [e["transaction_id"] for e in api_client.get(
        f"/api/v1/events?timestamp_from={from_instant}").json()["events"]] == ["t2", "t1"]
    bad = api_client.get("/api/v1/events?timestamp_from=yesterday")
    assert bad.status_code == 422 and bad.json()["error_details"] == {"timestamp_from": ["invalid_format"]}
    # another service sees none of them
    assert other_api_client.get("/api/v1/events").json()["meta"]["total_count"] == 0


def test_estimate_fees_answers_as_lago_without_instant_charges(lago, api_client, subscription):
    event = Event(transaction_id="ignored", external_subscription_id="sub_1", code="cpu_seconds",
                  properties={"cpu_seconds": 10})
    with pytest.raises(LagoApiError) as no_instant:
        lago.events.estimate_fees(event)
    assert no_instant.value.status_code == 422
    assert no_instant.value.response["error_details"] == {"code": ["does_not_match_an_instant_charge"]}
    with pytest.raises(LagoApiError) as unknown_sub:
        lago.events.estimate_fees(Event(transaction_id="x", external_subscription_id="nope", code="cpu_seconds"))
    assert unknown_sub.value.status_code == 404 and unknown_sub.value.response["code"] == "subscription_not_found"
    with pytest.raises(LagoApiError) as unknown_metric:
        lago.events.estimate_fees(Event(transaction_id="x", external_subscription_id="sub_1", code="nope"))
    assert unknown_metric.value.response["code"] == "billable_metric_not_found"
    missing_value = api_client.post("/api/v1/events/estimate_fees", {"event": {
        "external_subscription_id": "sub_1", "code": "cpu_seconds", "properties": {}}}, format="json")
    assert missing_value.status_code == 422
    assert missing_value.json()["error_details"] == {"properties": {"cpu_seconds": ["value_is_mandatory"]}}
    assert not api_client.get("/api/v1/events").json()["events"]  # nothing was stored


def test_lifetime_usage_from_the_rating_engine(lago, api_client, subscription):
    from decimal import Decimal

    sub = Subscription.objects.get(external_id="sub_1")
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": "t1", "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "properties": {"cpu_seconds": 7200 * 100}}}, format="json")
    assert response.status_code == 200, response.content
    usage = lago.subscriptions.lifetime_usage("sub_1")
    # 200 core-hours at 0.0075 each (unit batch 3600) = 1.50 CAD, the open window
    assert (usage.current_usage_amount_cents, usage.invoiced_usage_amount_cents) == (150, 0)
    assert usage.lago_subscription_id == str(sub.id) and usage.external_historical_usage_amount_cents == 0
    # a closed window counts as invoiced, to the cent of its invoice line
    RatedUsage.objects.create(subscription=sub, charge=sub.plan.charges.get(), window_start=sub.started_at,
                              window_end=sub.current_period_start, amount=Decimal("2.345000"),
                              state="frozen")
    assert lago.subscriptions.lifetime_usage("sub_1").invoiced_usage_amount_cents == 235
    with pytest.raises(LagoApiError) as update:
        lago.subscriptions.update_lifetime_usage("sub_1", 100)
    assert update.value.status_code == 405
    assert update.value.response["code"] == "subscription_lifetime_usage_not_supported"
    with pytest.raises(LagoApiError) as missing:
        lago.subscriptions.lifetime_usage("nope")
    assert missing.value.response["code"] == "subscription_not_found"
