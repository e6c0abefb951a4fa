"""Lago's lenient event mode (Service.lenient_events): events for unknown subscriptions or
metrics, or without the metric's property, are accepted and kept (never billed), then
reported by one events.errors webhook per beat run, instead of a 422."""
from __future__ import annotations

import json

import pytest

from metering import rating, tasks
from metering.models import RatedUsage, Subscription, UnmatchedEvent, UsageEvent
from webhooks.models import WebhookEvent

from .conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db


def event(transaction_id, subscription="sub_1", code="cpu_seconds", **properties):
    return {"transaction_id": transaction_id, "external_subscription_id": subscription, "code": code,
            "properties": properties or {"cpu_seconds": 10}}


@pytest.fixture
def catalogue_and_subscription(api_client):
    create_catalogue(api_client)
    create_subscription(api_client)


def test_strict_by_default(api_client, catalogue_and_subscription):
    response = api_client.post("/api/v1/events", {"event": event("t1", subscription="later")}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"external_subscription_id": ["subscription_not_found"]}
    assert not UnmatchedEvent.objects.exists()


def test_lenient_service_keeps_unmatched_events_and_reports_them_once_per_run(
        api_client, service, catalogue_and_subscription):
    service.lenient_events = True
    service.save()
    batch = [event("ok"), event("early", subscription="later"), event("typo", code="cpu_secs"),
             event("bare", nothing=1)]
    response = api_client.post("/api/v1/events/batch", {"events": batch}, format="json")
    assert response.status_code == 200, response.content
    answered = response.json()["events"]
    assert [e["transaction_id"] for e in answered] == ["ok", "early", "typo", "bare"]
    assert answered[0]["lago_subscription_id"] is not None
    assert [e["lago_subscription_id"] for e in answered[1:]] == [None, None, None]
    # Only the matched event is usage; the others are kept as sent, never rated.
    assert list(UsageEvent.objects.values_list("transaction_id", flat=True)) == ["ok"]
    assert dict(UnmatchedEvent.objects.values_list("transaction_id", "error")) == {
        "early": "missing_subscription", "typo": "invalid_code", "bare": "missing_aggregation_property"}
    # An identical resend is a success that stores nothing new; a malformed event is still a 422.
    assert api_client.post("/api/v1/events", {"event": batch[1]}, format="json").status_code == 200
    assert UnmatchedEvent.objects.count() == 3
    malformed = api_client.post("/api/v1/events/batch", {"events": [event("x", subscription="later"),
                                                                      {"code": "cpu_seconds"}]}, format="json")
    assert malformed.status_code == 422 and set(malformed.json()["error_details"]) == {"1"}
    assert not UnmatchedEvent.objects.filter(transaction_id="x").exists()

    assert tasks.report_event_errors() == 1
    (webhook,) = WebhookEvent.objects.filter(webhook_type="events.errors")
    body = json.loads(webhook.body)
    assert body["object_type"] == "events_errors"
    assert body["events_errors"] == {"invalid_code": ["typo"], "missing_aggregation_property": ["bare"],
                                     "invalid_filter_values": [], "missing_group_key": [],
                                     "missing_subscription": ["early"]}
    assert tasks.report_event_errors() == 0  # reported once

    # A subscription created later does not bill what was kept before it existed.
    create_subscription(api_client, external_id="later", subscription_at="2020-01-01T00:00:00Z")
    later = Subscription.objects.get(external_id="later")
    rating.rate_subscription(subscription_id=later.id)
    assert not UsageEvent.objects.filter(subscription=later).exists()
    assert not RatedUsage.objects.filter(subscription=later, events_count__gt=0).exists()
