"""Event ingestion through the HTTP API on the embedded SQLite default (``_ingest_portably``)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection

from identity.models import AccountLink, Customer
from identity.services import allocate_account_number
from metering import services
from metering.services import ingest
from metering.models import AggregationType, BillableMetric, Charge, ChargeModel, Plan, Subscription, UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)


def make_subscription(service, *, external_id: str = "sub-1", customer: str = "cus-1") -> Subscription:
    """CPU seconds at CAD 0.0075 per core-hour, beyond 3,600 free seconds; started an hour ago."""
    metric, _ = BillableMetric.objects.get_or_create(
        service=service, code="cpu_seconds",
        defaults={"name": "CPU seconds", "aggregation_type": AggregationType.SUM, "field_name": "cpu_seconds"})
    plan, created = Plan.objects.get_or_create(
        service=service, code="cloud",
        defaults={"name": "Cloud", "interval": "monthly", "amount": Decimal("10.00"), "amount_currency": "CAD"})
    if created:
        Charge.objects.create(plan=plan, metric=metric, charge_model=ChargeModel.STANDARD, amount=Decimal("0.0075"),
                              unit_batch=Decimal(3600), free_units=Decimal(3600))
    person = Customer.objects.create(email=f"{customer}@example.test")
    number, slug = allocate_account_number(service=service)
    AccountLink.objects.create(service=service, external_id=customer, customer=person, name=customer, currency="CAD",
                               sequential_id=number, slug=slug)
    return services.create_subscription(service=service, data={
        "external_customer_id": customer, "plan_code": "cloud", "external_id": external_id,
        "subscription_at": datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1),
    }).subscription


def event_body(subscription: Subscription, transaction_id: str, *, cpu_seconds: int | str = 3600,
               timestamp: datetime | None = None) -> dict:
    event = {"transaction_id": transaction_id, "external_subscription_id": subscription.external_id,
             "code": "cpu_seconds", "properties": {"cpu_seconds": cpu_seconds}}
    if timestamp is not None:
        event["timestamp"] = str(int(timestamp.timestamp()))
    return {"event": event}


@pytest.fixture
def portable_calls(monkeypatch) -> list[int]:
    """Proves the requests below go through the SQLite-only ORM path."""
    calls: list[int] = []
    real = ingest._ingest_portably

    def spy(**kwargs):
        calls.append(len(kwargs["events"]))
        return real(**kwargs)

    monkeypatch.setattr(ingest, "_ingest_portably", spy)
    return calls


def test_a_single_event_is_stored_once_and_resends_are_idempotent(api_client, service, portable_calls):
    assert connection.vendor == "sqlite"
    subscription = make_subscription(service)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    first = api_client.post("/api/v1/events", event_body(subscription, "tx-1", cpu_seconds="7200.5", timestamp=at),
                            format="json")
    assert first.status_code == 200, first.content
    body = first.json()["event"]
    assert (body["transaction_id"], body["external_subscription_id"], body["code"]) == (
        "tx-1", "sub-1", "cpu_seconds")
    assert body["lago_subscription_id"] == str(subscription.id)

    resend = api_client.post("/api/v1/events", event_body(subscription, "tx-1", cpu_seconds="7200.5", timestamp=at),
                             format="json")
    assert resend.status_code == 200 and resend.json() == first.json()
    conflicting = api_client.post("/api/v1/events", event_body(subscription, "tx-1", cpu_seconds=1, timestamp=at),
                                  format="json")
    assert conflicting.status_code == 422
    assert conflicting.json()["error_details"] == {"transaction_id": ["value_already_exist"]}

    (stored,) = UsageEvent.objects.all()
    assert stored.value == Decimal("7200.5") and isinstance(stored.value, Decimal)
    assert stored.timestamp == at and stored.timestamp.utcoffset() == timedelta(0)
    assert stored.subscription_id == subscription.id and stored.properties == {"cpu_seconds": "7200.5"}
    assert portable_calls == [1, 1, 1]


def test_a_batch_is_all_or_nothing(api_client, service, portable_calls):
    subscription = make_subscription(service)
    good = [event_body(subscription, f"b-{i}", cpu_seconds=i)["event"] for i in range(1, 4)]
    bad = {**good[0], "transaction_id": "b-bad", "external_subscription_id": "nobody"}

    rejected = api_client.post("/api/v1/events/batch", {"events": [*good, bad]}, format="json")
    assert rejected.status_code == 422, rejected.content
    assert rejected.json()["error_details"] == {"3": {"external_subscription_id": ["subscription_not_found"]}}
    assert not UsageEvent.objects.exists()

    accepted = api_client.post("/api/v1/events/batch", {"events": good}, format="json")
    assert accepted.status_code == 200, accepted.content
    assert [e["transaction_id"] for e in accepted.json()["events"]] == ["b-1", "b-2", "b-3"]
    assert sorted(UsageEvent.objects.values_list("transaction_id", "value")) == [
        ("b-1", Decimal(1)), ("b-2", Decimal(2)), ("b-3", Decimal(3))]
    again = api_client.post("/api/v1/events/batch", {"events": good}, format="json")
    assert again.status_code == 200 and UsageEvent.objects.count() == 3
    assert portable_calls == [4, 3, 3]


def test_ingest_rules_on_the_portable_path(api_client, service):
    subscription = make_subscription(service)
    before_start = subscription.started_at - timedelta(days=1)
    early = api_client.post("/api/v1/events", event_body(subscription, "early", timestamp=before_start),
                            format="json")
    assert early.status_code == 422
    assert early.json()["error_details"] == {"timestamp": ["before_subscription_start"]}

    # A window frozen by rating refuses late events for it.
    Subscription.objects.filter(pk=subscription.pk).update(
        usage_frozen_until=datetime.now(timezone.utc) - timedelta(minutes=1))
    late = api_client.post("/api/v1/events", event_body(
        subscription, "late", timestamp=datetime.now(timezone.utc) - timedelta(minutes=2)), format="json")
    assert subscription.started_at < datetime.now(timezone.utc) - timedelta(minutes=2)
    assert late.status_code == 422
    assert late.json()["error_details"] == {"timestamp": ["period_closed"]}

    unknown_metric = api_client.post("/api/v1/events", {"event": {
        **event_body(subscription, "m")["event"], "code": "gpu_seconds"}}, format="json")
    assert unknown_metric.status_code == 422
    assert unknown_metric.json()["error_details"] == {"code": ["billable_metric_not_found"]}
    assert not UsageEvent.objects.exists()


def test_an_idempotency_key_request_takes_the_drf_view_on_sqlite(api_client, service, portable_calls):
    subscription = make_subscription(service)
    first = api_client.post("/api/v1/events", event_body(subscription, "idem"), format="json",
                            HTTP_IDEMPOTENCY_KEY="key-1")
    replay = api_client.post("/api/v1/events", event_body(subscription, "idem"), format="json",
                             HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == replay.status_code == 200, first.content
    assert replay.json() == first.json()
    assert UsageEvent.objects.filter(transaction_id="idem").count() == 1
    assert portable_calls == [1]  # the replay was answered from the stored response
