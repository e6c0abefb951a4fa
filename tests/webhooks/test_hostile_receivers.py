"""One tenant's hostile receivers must not jam webhook delivery for the others (#17 F2).

Hostile endpoints (NUL bytes and invalid UTF-8 in the body, a NUL in a header, huge
and countless headers, a slow-loris dripping its headers, odd status lines,
``Retry-After: ²``, an HTTP-date ``Retry-After``, a non-ASCII URL path) are claimed in
the *same batch* as a well-behaved tenant's endpoint. Every delivery of the batch gets
its outcome recorded: the good tenant's are succeeded, each sent and recorded exactly
once; the hostile ones are failed attempts that are retried or dead-lettered, never
left claimed and pending.
"""

from __future__ import annotations

import email.utils
import json
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from webhooks import delivery, signing
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.testing.receiver import Fault

from .conftest import make_due

pytestmark = pytest.mark.django_db

GOOD_EVENTS = 3
RETRY_AT = datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)


def hostile_faults() -> dict[str, Fault]:
    return {
        "/nul-body": Fault.error(500, b"bad\x00bytes\x00"),
        "/nul-body-ok": Fault(status=200, body=b"ok\x00"),
        "/bad-utf8": Fault.error(502, b"\xff\xfe\xc3\x28 \xed\xa0\x80 not utf-8"),
        "/nul-header": Fault.raw_response(b"HTTP/1.1 302 Found\r\nLocation: /x\x00y\r\nContent-Length: 0\r\n\r\n"),
        "/huge-header": Fault.huge_header(),
        "/many-headers": Fault.many_headers(),
        "/slow-loris": Fault.slow_loris(0.2),
        "/status-garbage": Fault.raw_response(b"ICY 200 OK\r\n\r\nok"),
        "/status-999": Fault.raw_response(b"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n"),
        "/status-huge": Fault.raw_response(b"HTTP/1.1 20000000000000000000 OK\r\nContent-Length: 0\r\n\r\n"),
        "/status-no-reason": Fault.raw_response(b"HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n"),
        "/status-nul": Fault.raw_response(b"HTTP/1.1 500 b\x00d\xff\r\nContent-Length: 0\r\n\r\n"),
        "/retry-sup": Fault.rate_limited("²"),
        "/retry-date": Fault.rate_limited(email.utils.format_datetime(RETRY_AT, usegmt=True), status=503),
        "/retry-huge": Fault.rate_limited("9" * 5000),
    }


@pytest.fixture
def batch_settings(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_SEND_CONCURRENCY = 8
    settings.WEBHOOK_ENDPOINTS_PER_SERVICE = 100
    return settings


def _make_endpoints(service, receiver, paths):
    endpoints = {}
    for path in paths:
        endpoints[path] = WebhookEndpoint.objects.create(service=service, url=receiver.url(path), secret=signing.generate_secret())
    return endpoints


def test_hostile_receivers_do_not_jam_a_good_tenant_in_the_same_batch(
    batch_settings, service, other_service, receiver, make_endpoint, emit,
):
    faults = hostile_faults()
    for path, fault in faults.items():
        receiver.add_faults(path, fault)
    # The hostile tenant: more endpoints than the API allows, made directly.
    hostile = _make_endpoints(other_service, receiver, faults)
    # A non-ASCII path registered through the service is stored percent-encoded.
    unicode_endpoint = make_endpoint(other_service, receiver.url("/ünïcode/ø")).endpoint
    assert unicode_endpoint.url == receiver.url("/%C3%BCn%C3%AFcode/%C3%B8")
    # One stored before URLs were normalised: encoded when sent.
    legacy = WebhookEndpoint.objects.create(service=other_service, url=receiver.url("/légacy"), secret=signing.generate_secret())
    good = make_endpoint(service, receiver.url("/good")).endpoint

    hostile_event = emit(other_service)
    good_events = [emit(service, payload={"n": i}) for i in range(GOOD_EVENTS)]
    expected = len(hostile) + 2 + GOOD_EVENTS

    claimed = delivery.claim_due(limit=100)
    assert len(claimed) == expected  # one claimed batch, good and hostile together
    results = delivery.send_claimed(claimed)
    assert len(results) == expected

    # The good tenant: every delivery sent once, recorded once, succeeded.
    good_deliveries = WebhookDelivery.objects.filter(endpoint=good)
    assert {d.status for d in good_deliveries} == {WebhookDelivery.SUCCEEDED}
    assert WebhookAttempt.objects.filter(delivery__endpoint=good).count() == GOOD_EVENTS
    received = receiver.received("/good")
    assert sorted(json.loads(r.body)["invoice"]["n"] for r in received) == list(range(GOOD_EVENTS))
    assert {r.header("webhook-id") for r in received} == {str(e.id) for e in good_events}

    # Every hostile delivery has exactly one recorded attempt and is released.
    for d in WebhookDelivery.objects.filter(event=hostile_event).select_related("endpoint"):
        attempts = list(d.attempts.all())
        assert len(attempts) == 1, d.endpoint.url
        assert d.claimed_until is None, d.endpoint.url
        assert "\x00" not in attempts[0].response_excerpt + attempts[0].error + d.last_error
        if d.endpoint_id in (unicode_endpoint.id, legacy.id):
            assert d.status == WebhookDelivery.SUCCEEDED, d.endpoint.url
            continue
        if d.endpoint.url.endswith("/nul-body-ok"):
            assert d.status == WebhookDelivery.SUCCEEDED and attempts[0].response_excerpt == "ok\ufffd"
            continue
        assert d.status == WebhookDelivery.PENDING and d.next_attempt_at > timezone.now(), d.endpoint.url
        assert attempts[0].outcome == WebhookAttempt.FAILED, d.endpoint.url

    def hostile_delivery(path):
        return WebhookDelivery.objects.get(event=hostile_event, endpoint=hostile[path])

    # Retry-After: "²" is not delta-seconds (ignored: the schedule applies); an
    # HTTP-date is honoured but bounded; an absurd number is bounded too.
    now = timezone.now()
    assert hostile_delivery("/retry-sup").next_attempt_at < now + timedelta(seconds=30)
    assert now + timedelta(hours=23) < hostile_delivery("/retry-date").next_attempt_at <= now + timedelta(hours=24)
    assert now + timedelta(hours=23) < hostile_delivery("/retry-huge").next_attempt_at <= now + timedelta(hours=24)
    # The slow-loris was cut off by the timeout.
    slow = hostile_delivery("/slow-loris").attempts.get()
    assert slow.error_kind == "timeout" and slow.duration_ms < 3000
    assert hostile_delivery("/bad-utf8").attempts.get().response_excerpt.endswith("not utf-8")
    # The non-ASCII paths were reached, percent-encoded.
    assert len(receiver.received("/%C3%BCn%C3%AFcode/%C3%B8")) == 1
    assert len(receiver.received("/l%C3%A9gacy")) == 1
    assert WebhookDelivery.objects.get(event=hostile_event, endpoint=legacy).status == WebhookDelivery.SUCCEEDED


def test_hostile_receivers_end_as_dead_letters_and_the_good_tenant_is_sent_once(
    batch_settings, service, other_service, receiver, make_endpoint, emit,
):
    batch_settings.WEBHOOK_MAX_ATTEMPTS = 2
    faults = hostile_faults()
    faults.pop("/nul-body-ok")
    for path, fault in faults.items():
        receiver.set_default(Fault.ok())
        receiver.add_faults(path, fault, fault)
    hostile = _make_endpoints(other_service, receiver, faults)
    good = make_endpoint(service, receiver.url("/good")).endpoint
    emit(other_service)
    for i in range(GOOD_EVENTS):
        emit(service, payload={"n": i})

    for _round in range(2):
        make_due(WebhookDelivery.objects.filter(status=WebhookDelivery.PENDING))
        delivery.deliver_all_due()

    assert WebhookDelivery.objects.filter(endpoint__in=hostile.values(), status=WebhookDelivery.DEAD).count() == len(
        hostile)
    assert WebhookAttempt.objects.filter(delivery__endpoint__in=hostile.values()).count() == 2 * len(hostile)
    assert WebhookDelivery.objects.filter(endpoint=good, status=WebhookDelivery.SUCCEEDED).count() == GOOD_EVENTS
    assert WebhookAttempt.objects.filter(delivery__endpoint=good).count() == GOOD_EVENTS
    assert len(receiver.received("/good")) == GOOD_EVENTS
    assert not WebhookDelivery.objects.filter(claimed_until__isnull=False).exists()


def test_an_unexpected_error_in_one_send_is_recorded_for_that_delivery_only(
    batch_settings, service, other_service, receiver, make_endpoint, emit, monkeypatch,
):
    bad = make_endpoint(other_service, receiver.url("/bad")).endpoint
    good = make_endpoint(service, receiver.url("/good")).endpoint
    emit(other_service)
    emit(service)
    real = delivery.sender.post_webhook

    def exploding(*, url, **kwargs):
        if url.endswith("/bad"):
            raise RuntimeError("boom\x00")
        return real(url=url, **kwargs)

    monkeypatch.setattr(delivery.sender, "post_webhook", exploding)
    delivery.send_claimed(delivery.claim_due(limit=100))
    bad_delivery = WebhookDelivery.objects.get(endpoint=bad)
    assert bad_delivery.status == WebhookDelivery.PENDING and bad_delivery.claimed_until is None
    attempt = bad_delivery.attempts.get()
    assert attempt.outcome == WebhookAttempt.FAILED and attempt.error_kind == "internal"
    assert "RuntimeError" in attempt.error and "\x00" not in attempt.error
    assert WebhookDelivery.objects.get(endpoint=good).status == WebhookDelivery.SUCCEEDED


def test_a_row_the_database_refuses_does_not_lose_the_batch(
    batch_settings, service, other_service, receiver, make_endpoint, emit, monkeypatch,
):
    """Even if one attempt row cannot be written, the others are recorded."""
    make_endpoint(other_service, receiver.url("/bad"))
    good = make_endpoint(service, receiver.url("/good")).endpoint
    emit(other_service)
    emit(service)
    real = delivery.sender.post_webhook

    def poisoned(*, url, **kwargs):
        outcome = real(url=url, **kwargs)
        if url.endswith("/bad"):  # bypass the sender's sanitising: the recorder must cope
            return delivery.sender.AttemptOutcome(500, 1, "x" * 10, "http_status", "HTTP 500",
                                                  connected_ip="x" * 300)
        return outcome

    monkeypatch.setattr(delivery.sender, "post_webhook", poisoned)
    delivery.send_claimed(delivery.claim_due(limit=100))
    assert WebhookDelivery.objects.get(endpoint=good).status == WebhookDelivery.SUCCEEDED
    assert WebhookAttempt.objects.filter(delivery__endpoint=good).count() == 1
    bad = WebhookDelivery.objects.get(endpoint__url__endswith="/bad")
    assert bad.claimed_until is None and bad.status == WebhookDelivery.PENDING
    assert bad.attempts.count() == 1


def test_a_delivery_whose_every_attempt_was_abandoned_ends_as_a_dead_letter(
    settings, service, other_service, receiver, make_endpoint, emit,
):
    """A receiver (or payload) that kills the worker on every attempt cannot keep a delivery pending forever."""
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    make_endpoint(other_service, receiver.url("/killer"))
    good = make_endpoint(service, receiver.url("/good")).endpoint
    killer_event = emit(other_service)
    for attempt in range(1, 4):
        [claimed] = delivery.claim_due(event_ids=[killer_event.id])  # ...and the worker dies here
        assert claimed.attempts_count == attempt
        WebhookDelivery.objects.filter(pk=claimed.pk).update(
            claimed_until=timezone.now() - timedelta(seconds=1), next_attempt_at=timezone.now())
    good_event = emit(service)
    results = delivery.send_claimed(delivery.claim_due(limit=100))
    assert [r.action for r in results] == ["succeeded"]
    dead = WebhookDelivery.objects.get(event=killer_event)
    assert dead.status == WebhookDelivery.DEAD and dead.claimed_until is None and "gave up after 3" in dead.last_error
    assert [a.outcome for a in dead.attempts.all()] == ["abandoned"] * 3
    assert WebhookDelivery.objects.get(event=good_event, endpoint=good).status == WebhookDelivery.SUCCEEDED
    assert receiver.received("/killer") == []
