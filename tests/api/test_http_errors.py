"""Raw HTTP: status codes and Lago error bodies; ingestion validation and idempotency."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from metering.models import Subscription, UsageEvent
from tests.api.conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db

NOW = int(time.time())


def event(**overrides):
    body = {"transaction_id": "tx_1", "external_subscription_id": "sub_1", "code": "cpu_seconds",
            "timestamp": str(NOW), "precise_total_amount_cents": None, "properties": {"cpu_seconds": 10}}
    body.update(overrides)
    return body


def post_event(client, **overrides):
    return client.post("/api/v1/events", {"event": event(**overrides)}, format="json")


def details(response):
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == response.status_code
    return body.get("error_details")


class TestRequestShape:
    @pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/events/batch", "/api/v1/customers",
                                      "/api/v1/plans", "/api/v1/subscriptions", "/api/v1/billable_metrics"])
    def test_malformed_json_is_400_json(self, api_client, path):
        response = api_client.post(path, b'{"event": {', content_type="application/json")
        assert response.status_code == 400 and response["Content-Type"] == "application/json"
        assert response.json()["error"].startswith("BadRequest")

    @pytest.mark.parametrize("path, root", [("/api/v1/events", "event"), ("/api/v1/events/batch", "events"),
                                            ("/api/v1/customers", "customer"), ("/api/v1/plans", "plan"),
                                            ("/api/v1/subscriptions", "subscription")])
    def test_missing_root_key_is_lagos_400(self, api_client, path, root):
        response = api_client.post(path, {"something": {}}, format="json")
        assert response.status_code == 400
        assert response.json() == {"status": 400, "code": "bad_request",
                                   "error": f"BadRequest: param is missing or the value is empty: {root}"}

    def test_oversized_body_is_413_json_before_parsing(self, api_client, settings):
        settings.API_MAX_BODY_BYTES = 1000
        response = api_client.post("/api/v1/events/batch", {"events": [event(transaction_id=str(i))
                                                                        for i in range(50)]}, format="json")
        assert response.status_code == 413
        assert response.json() == {"status": 413, "error": "Payload Too Large", "code": "payload_too_large"}

    def test_unknown_route_and_method_are_json(self, api_client):
        assert api_client.get("/api/v1/nothing-here").json()["code"] == "resource_not_found"
        response = api_client.patch("/api/v1/events", {}, format="json")
        assert response.status_code == 405 and response["Content-Type"] == "application/json"

    def test_no_api_key_is_lagos_401(self, client):
        response = client.post("/api/v1/events", {"event": event()}, content_type="application/json")
        assert response.status_code == 401 and response.json() == {"status": 401, "error": "Unauthorized"}

    @pytest.mark.parametrize("path, code", [("/api/v1/customers/x", "customer_not_found"),
                                            ("/api/v1/subscriptions/x", "subscription_not_found"),
                                            ("/api/v1/plans/x", "plan_not_found"),
                                            ("/api/v1/billable_metrics/x", "billable_metric_not_found"),
                                            ("/api/v1/events/x", "event_not_found")])
    def test_not_found_codes(self, api_client, path, code):
        response = api_client.get(path)
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found", "code": code}


class TestCatalogueValidation:
    def test_plan_validation_uses_lago_codes(self, api_client, catalogue):
        response = api_client.post("/api/v1/plans", {"plan": {
            "name": "X", "code": "x", "interval": "fortnightly", "amount_cents": "ten", "amount_currency": "CAD"}},
            format="json")
        assert response.status_code == 422
        assert details(response) == {"interval": ["value_is_invalid"], "amount_cents": ["value_is_invalid"]}

    def test_charge_amounts_must_be_decimal_strings(self, api_client, catalogue):
        metric_id = catalogue["charges"][0]["lago_billable_metric_id"]
        response = api_client.post("/api/v1/plans", {"plan": {
            "name": "X", "code": "x", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD",
            "charges": [{"billable_metric_id": metric_id, "charge_model": "standard",
                         "properties": {"amount": 0.5}}]}}, format="json")
        assert response.status_code == 422 and details(response) == {"amount": ["invalid_amount"]}

    def test_duplicate_codes(self, api_client, catalogue):
        response = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
            "name": "again", "code": "cpu_seconds", "aggregation_type": "count_agg"}}, format="json")
        assert response.status_code == 422 and details(response) == {"code": ["value_already_exist"]}


class TestSubscriptions:
    def test_same_external_id_other_customer_is_422(self, api_client, subscription):
        response = api_client.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "someone_else", "plan_code": "starter", "external_id": "sub_1"}}, format="json")
        assert response.status_code == 422 and details(response) == {"external_id": ["value_already_exist"]}

    def test_another_plan_changes_the_plan(self, api_client, subscription):
        # Lago: "pro" costs as much as "starter" (10.00 a month), so it is an upgrade: the
        # current subscription is terminated now and a NEW one (new lago_id, same external
        # id) starts on "pro" with previous_plan_code "starter".
        create_catalogue(api_client, metric_code="gb", plan_code="pro")
        response = api_client.post("/api/v1/subscriptions", {"subscription": {
            "external_customer_id": "cus_1", "plan_code": "pro", "external_id": "sub_1"}}, format="json")
        assert response.status_code == 200
        body = response.json()["subscription"]
        assert body["lago_id"] != subscription["lago_id"]
        assert body["plan_code"] == "pro" and body["previous_plan_code"] == "starter"
        assert Subscription.objects.get(status="active").plan.code == "pro"
        assert Subscription.objects.get(pk=subscription["lago_id"]).status == "terminated"

    def test_future_subscription_is_pending_and_cancelable(self, api_client, catalogue):
        future = (timezone.now() + timedelta(days=3)).isoformat()
        created = create_subscription(api_client, external_id="later", subscription_at=future)
        assert created["status"] == "pending" and created["started_at"] is None
        assert api_client.get("/api/v1/subscriptions/later").status_code == 404  # default status active
        assert api_client.get("/api/v1/subscriptions/later?status=pending").status_code == 200
        listed = api_client.get("/api/v1/subscriptions?status[]=pending&status[]=active").json()
        assert [s["external_id"] for s in listed["subscriptions"]] == ["later"]
        canceled = api_client.delete("/api/v1/subscriptions/later?status=pending").json()["subscription"]
        assert canceled["status"] == "canceled"

    def test_list_defaults_to_active(self, api_client, subscription):
        api_client.delete("/api/v1/subscriptions/sub_1")
        assert api_client.get("/api/v1/subscriptions").json()["subscriptions"] == []
        terminated = api_client.get("/api/v1/subscriptions?status[]=terminated").json()["subscriptions"]
        assert [s["status"] for s in terminated] == ["terminated"]

    def test_bad_status_filter_is_422(self, api_client, subscription):
        assert details(api_client.get("/api/v1/subscriptions?status[]=bogus")) == {"status": ["value_is_invalid"]}


class TestEventValidation:
    @pytest.mark.parametrize("overrides, expected", [
        ({"code": "nope"}, {"code": ["billable_metric_not_found"]}),
        ({"external_subscription_id": "ghost"}, {"external_subscription_id": ["subscription_not_found"]}),
        ({"properties": {}}, {"properties": {"cpu_seconds": ["value_is_mandatory"]}}),
        ({"properties": None}, {"properties": {"cpu_seconds": ["value_is_mandatory"]}}),
        ({"properties": {"cpu_seconds": "ten"}}, {"properties": {"cpu_seconds": ["value_is_invalid"]}}),
        ({"properties": {"cpu_seconds": 1e40}}, {"properties": {"cpu_seconds": ["value_is_out_of_range"]}}),
        ({"timestamp": "2024-05-01T00:00:00Z"}, {"timestamp": ["invalid_format"]}),
        ({"timestamp": "1500000000"}, {"timestamp": ["before_subscription_start"]}),
        ({"transaction_id": None}, {"transaction_id": ["value_is_mandatory"]}),
    ])
    def test_rejected_events(self, api_client, subscription, overrides, expected):
        response = post_event(api_client, **overrides)
        assert response.status_code == 422 and details(response) == expected
        assert UsageEvent.objects.count() == 0

    def test_after_the_subscription_ended(self, api_client, subscription):
        api_client.delete("/api/v1/subscriptions/sub_1")
        response = post_event(api_client, timestamp=str(int(time.time()) + 5))
        assert response.status_code == 422 and details(response) == {"timestamp": ["after_subscription_end"]}
        # ...and usage from before the termination too: the termination closed (froze) the
        # final window at once, so that the final invoice is exact (issue #12).
        response = post_event(api_client, timestamp=str(int(time.time()) - 60))
        assert response.status_code == 422 and details(response) == {"timestamp": ["period_closed"]}

    def test_before_the_open_window_is_period_closed(self, api_client, subscription):
        window_start = Subscription.objects.get().current_period_start
        response = post_event(api_client, timestamp=str(int(window_start.timestamp()) - 1))
        assert response.status_code == 422 and details(response) == {"timestamp": ["period_closed"]}
        assert post_event(api_client, timestamp=str(int(window_start.timestamp()))).status_code == 200

    def test_timestamp_forms_and_null_means_now(self, api_client, subscription):
        for i, timestamp in enumerate([NOW, f"{NOW}.25", NOW + 0.5]):
            assert post_event(api_client, transaction_id=f"t{i}", timestamp=timestamp).status_code == 200
        before = timezone.now()
        body = post_event(api_client, transaction_id="now", timestamp=None).json()["event"]
        stored = UsageEvent.objects.get(transaction_id="now").timestamp
        assert before <= stored <= timezone.now()
        assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == 24
        assert UsageEvent.objects.get(transaction_id="t1").timestamp.microsecond == 250000

    def test_identical_resend_is_success_counted_once(self, api_client, subscription):
        first = post_event(api_client)
        second = post_event(api_client)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert UsageEvent.objects.count() == 1
        conflicting = post_event(api_client, properties={"cpu_seconds": 11})
        assert conflicting.status_code == 422
        assert details(conflicting) == {"transaction_id": ["value_already_exist"]}

    def test_null_timestamp_resend_is_identical(self, api_client, subscription):
        assert post_event(api_client, timestamp=None).status_code == 200
        assert post_event(api_client, timestamp=None).status_code == 200
        assert UsageEvent.objects.count() == 1

    def test_same_transaction_id_on_another_subscription_is_another_event(self, api_client, subscription):
        create_subscription(api_client, external_id="sub_2")
        assert post_event(api_client).status_code == 200
        assert post_event(api_client, external_subscription_id="sub_2").status_code == 200
        assert UsageEvent.objects.count() == 2
        found = api_client.get("/api/v1/events/tx_1?external_subscription_id=sub_2").json()["event"]
        assert found["external_subscription_id"] == "sub_2"


class TestBatches:
    def test_batch_is_all_or_nothing_with_errors_by_index(self, api_client, subscription):
        response = api_client.post("/api/v1/events/batch", {"events": [
            event(transaction_id="a"), event(transaction_id="b", code="nope"),
            event(transaction_id="c", timestamp="yesterday")]}, format="json")
        assert response.status_code == 422
        assert details(response) == {"1": {"code": ["billable_metric_not_found"]},
                                     "2": {"timestamp": ["invalid_format"]}}
        assert UsageEvent.objects.count() == 0

    def test_a_conflicting_duplicate_rolls_back_the_whole_batch(self, api_client, subscription):
        post_event(api_client, transaction_id="old")
        response = api_client.post("/api/v1/events/batch", {"events": [
            event(transaction_id="new"), event(transaction_id="old", properties={"cpu_seconds": 99})]},
            format="json")
        assert details(response) == {"1": {"transaction_id": ["value_already_exist"]}}
        assert list(UsageEvent.objects.values_list("transaction_id", flat=True)) == ["old"]

    def test_a_batch_of_already_stored_identical_events_succeeds(self, api_client, subscription):
        batch = {"events": [event(transaction_id=str(i)) for i in range(5)]}
        assert api_client.post("/api/v1/events/batch", batch, format="json").status_code == 200
        again = api_client.post("/api/v1/events/batch", batch, format="json")
        assert again.status_code == 200 and len(again.json()["events"]) == 5
        assert UsageEvent.objects.count() == 5

    def test_batch_limits(self, api_client, subscription):
        empty = api_client.post("/api/v1/events/batch", {"events": []}, format="json")
        assert empty.status_code == 422 and details(empty) == {"events": ["no_events"]}
        too_many = api_client.post("/api/v1/events/batch", {"events": [event(transaction_id=str(i))
                                                                       for i in range(101)]}, format="json")
        assert details(too_many) == {"events": ["too_many_events"]}
        with override_settings(EVENTS_BATCH_MAX_LENGTH=2):
            assert details(api_client.post("/api/v1/events/batch", {"events": [event()] * 3},
                                           format="json")) == {"events": ["too_many_events"]}


class TestNoCrossServiceResolution:
    """Seed 003: an integer-looking external id reached another service's subscription."""

    def test_integer_looking_ids_never_reach_another_services_subscription(
            self, api_client, other_api_client, subscription):
        create_catalogue(other_api_client)
        create_subscription(other_api_client, external_id="12345", customer="theirs")
        own_pk_like = str(Subscription.objects.get(external_id="sub_1").pk)
        for external_id in ("12345", own_pk_like, "1"):
            response = post_event(api_client, external_subscription_id=external_id)
            assert details(response) == {"external_subscription_id": ["subscription_not_found"]}
            assert api_client.get(f"/api/v1/subscriptions/{external_id}").status_code == 404
        assert UsageEvent.objects.count() == 0


def test_pending_subscriptions_start_when_due(api_client, catalogue):
    from metering.services import activate_due_subscriptions
    from webhooks.models import WebhookEvent

    future = timezone.now() + timedelta(hours=1)
    create_subscription(api_client, external_id="later", subscription_at=future.isoformat())
    assert activate_due_subscriptions() == 0
    assert activate_due_subscriptions(now=future + timedelta(seconds=1)) == 1
    subscription = Subscription.objects.get(external_id="later")
    assert subscription.status == "active" and subscription.started_at == future.replace(microsecond=future.microsecond)
    assert subscription.current_period_start == future
    assert WebhookEvent.objects.filter(webhook_type="subscription.started").count() == 1
