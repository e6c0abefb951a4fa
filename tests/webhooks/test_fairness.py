"""Fairness (#17): one service's slow or failing endpoints cannot delay another service's webhooks.

Structure only (no timing): round-robin claims across services, a per-endpoint in-flight
cap, and the circuit breaker (open, half-open probe, close; disable after sustained
failure, with a notice). The p99 comparison lives in bench/webhooks.py --tarpits.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from webhooks import delivery
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.testing.receiver import Fault, WebhookReceiver

from .conftest import make_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def tarpit():
    """A receiver that accepts every connection and never answers."""
    with WebhookReceiver() as r:
        r.set_default(Fault.timeout(30))
        yield r


def test_ten_tarpits_of_one_service_leave_room_for_another_services_deliveries(
        service, other_service, receiver, tarpit, make_endpoint, emit, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 3
    for i in range(10):
        make_endpoint(service, tarpit.url(f"/tarpit/{i}"))
    for _ in range(10):
        emit(service)  # 100 deliveries to tarpits ...
    # ... all due long before the other service's: a plain oldest-first claim would take only them.
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(hours=1))
    make_endpoint(other_service, receiver.url("/good"))
    good = [emit(other_service) for _ in range(3)]
    good_ids = set(WebhookDelivery.objects.filter(event__in=good).values_list("id", flat=True))

    claimed = delivery.claim_due(limit=20)

    assert good_ids <= {d.id for d in claimed}
    per_endpoint: dict = {}
    for d in claimed:
        per_endpoint[d.endpoint_id] = per_endpoint.get(d.endpoint_id, 0) + 1
    assert max(per_endpoint.values()) <= 3  # the in-flight cap
    # The first cycle delivers the good service's webhooks, whatever the tarpits do.
    results = delivery.send_claimed(claimed)
    assert len(receiver.received("/good")) == 3
    assert {r.delivery_id for r in results if r.action == "succeeded"} == good_ids
    assert set(WebhookDelivery.objects.filter(id__in=good_ids).values_list("status", flat=True)) == {"succeeded"}


def test_an_endpoint_gets_no_more_than_its_in_flight_cap_across_claims(service, receiver, make_endpoint, emit,
                                                                       settings):
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 2
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(5)]
    first = delivery.claim_due(event_ids=[e.id for e in events])
    assert len(first) == 2
    assert delivery.claim_due() == []  # another worker: the endpoint has its fill in flight
    delivery.send_claimed(first)
    assert len(delivery.claim_due()) == 2  # slots free again


def test_a_task_held_back_by_the_cap_sends_the_rest_once_its_slots_free(service, receiver, make_endpoint, emit,
                                                                         settings):
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 2
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(5)]
    results = delivery.deliver(event_ids=[e.id for e in events])
    assert [r.action for r in results] == ["succeeded"] * 5
    assert len(receiver.received()) == 5


def test_circuit_opens_after_failures_lets_one_probe_through_and_closes_on_success(
        service, receiver, make_endpoint, emit, settings, admin_client):
    settings.WEBHOOK_BREAKER_FAILURES = 3
    settings.WEBHOOK_BREAKER_OPEN_SECONDS = 30
    settings.WEBHOOK_MAX_ATTEMPTS = 50
    endpoint = make_endpoint(service, receiver.url()).endpoint
    receiver.set_default(Fault.error(500))
    events = [emit(service) for _ in range(5)]
    before = timezone.now()
    assert len(delivery.deliver_all_due()) == 5
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 5 and endpoint.failing_since is not None
    # 2 failures beyond the threshold: 30 s doubled twice.
    assert before + timedelta(seconds=119) <= endpoint.circuit_open_until <= timezone.now() + timedelta(seconds=121)
    assert endpoint.is_active

    make_due(WebhookDelivery.objects.all())
    assert delivery.claim_due() == []  # open: nothing is sent to it
    assert delivery.sweep_due() == 0  # nor queued
    assert admin_client.get("/ops/health").json()["checks"]["webhooks"]["circuits_open"] == 1
    page = admin_client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "open until" in page and "5 failures" in page

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(circuit_open_until=timezone.now() - timedelta(seconds=1))
    probe = delivery.claim_due()
    assert len(probe) == 1  # half-open: a single probe
    assert delivery.claim_due() == []
    receiver.set_default(Fault.ok())
    delivery.send_claimed(probe)
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since, endpoint.circuit_open_until) == (0, None, None)
    assert len(delivery.deliver_all_due()) == 4  # closed: the rest go at once
    assert WebhookDelivery.objects.filter(event__in=events, status="succeeded").count() == 5


def test_sustained_failure_disables_the_endpoint_and_notifies_the_service(
        service, receiver, make_endpoint, emit, settings, admin_client):
    settings.WEBHOOK_BREAKER_FAILURES = 3
    failing = make_endpoint(service, receiver.url("/failing")).endpoint
    notices = make_endpoint(service, receiver.url("/ops"), event_types_filter=["webhook_endpoint.disabled"]).endpoint
    receiver.add_faults("/failing", *[Fault.error(503)] * 5)
    emit(service)
    # Failing without a success for longer than WEBHOOK_BREAKER_DISABLE_AFTER_HOURS (72 h).
    WebhookEndpoint.objects.filter(pk=failing.pk).update(
        consecutive_failures=10, failing_since=timezone.now() - timedelta(hours=73))
    delivery.deliver_all_due()
    failing.refresh_from_db()
    assert failing.is_active is False and failing.disabled_at is not None
    assert "circuit breaker" in failing.disabled_reason and "11 failed attempts" in failing.disabled_reason
    notice = WebhookEvent.objects.get(webhook_type="webhook_endpoint.disabled")
    assert [d.endpoint_id for d in notice.deliveries.all()] == [notices.id]
    delivery.deliver_all_due()
    [received] = receiver.received("/ops")
    body = json.loads(received.body)
    assert body["webhook_type"] == "webhook_endpoint.disabled" and body["object_type"] == "webhook_endpoint"
    assert body["webhook_endpoint"]["lago_id"] == str(failing.id)
    assert body["webhook_endpoint"]["webhook_url"] == failing.url
    assert admin_client.get("/ops/health").json()["checks"]["webhooks"]["endpoints_disabled"] == 1

    # Staff re-enable it: the breaker starts afresh.
    from webhooks.services import set_endpoint_active

    set_endpoint_active(endpoint=failing, active=True)
    failing.refresh_from_db()
    assert (failing.consecutive_failures, failing.failing_since, failing.circuit_open_until) == (0, None, None)


def test_a_failing_endpoint_does_not_trip_the_breaker_of_a_healthy_one(service, receiver, make_endpoint, emit,
                                                                       settings):
    settings.WEBHOOK_BREAKER_FAILURES = 2
    bad = make_endpoint(service, receiver.url("/bad")).endpoint
    ok = make_endpoint(service, receiver.url("/ok")).endpoint
    receiver.add_faults("/bad", *[Fault.error(500)] * 3)
    for _ in range(3):
        emit(service)
    delivery.deliver_all_due()
    bad.refresh_from_db()
    ok.refresh_from_db()
    assert bad.circuit_open_until is not None and bad.consecutive_failures == 3
    assert ok.circuit_open_until is None and ok.consecutive_failures == 0
    assert len(receiver.received("/ok")) == 3


@pytest.mark.django_db(transaction=True)  # the sending thread records on its own connection
def test_a_task_leaves_a_slow_send_to_the_thread_pool_which_records_it(
        service, other_service, receiver, tarpit, make_endpoint, emit, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    make_endpoint(service, tarpit.url("/tarpit"))
    make_endpoint(other_service, receiver.url("/good"))
    slow, fast = emit(service), emit(other_service)
    claimed = delivery.claim_due(event_ids=[slow.id, fast.id])
    results = delivery.send_claimed(claimed, wait_seconds=0.2)
    # The task's answer holds the good delivery only; the tarpit's is still being sent.
    assert [r.delivery_id for r in results] == [fast.deliveries.get().id]
    assert results[0].action == "succeeded"
    stuck = slow.deliveries.get()
    assert stuck.attempts.count() == 0 and stuck.claimed_until is not None
    # ... and is recorded by its sending thread when the timeout fires.
    deadline = timezone.now() + timedelta(seconds=60)
    while not stuck.attempts.exists() and timezone.now() < deadline:
        tarpit.wait_for(1, timeout=1)
    [attempt] = stuck.attempts.all()
    assert attempt.outcome == "failed" and attempt.error_kind == "timeout"
    stuck.refresh_from_db()
    assert stuck.claimed_until is None and stuck.status == "pending"
    # While it was stalled its endpoint counted as slow: one delivery at a time.
    assert WebhookEndpoint.objects.get(pk=stuck.endpoint_id).consecutive_failures == 1
