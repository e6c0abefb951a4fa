"""The outbox and the delivery engine, in-process, against the real local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks import delivery, keys, services
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.testing.receiver import Fault

from .conftest import INVOICE, make_due

pytestmark = pytest.mark.django_db


def lago_check(secret: str, body: bytes, header: str) -> bool:
    # Lago's documented receiver check
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode() == header


# --- outbox -----------------------------------------------------------------------

def test_event_body_is_lago_envelope_stored_once(service, emit):
    event = emit(service)
    assert json.loads(bytes(event.body)) == {
        "webhook_type": "invoice.created", "object_type": "invoice",
        "organization_id": str(service.lago_id), "invoice": INVOICE,
    }
    assert bytes(event.body).isascii()


def test_event_rolls_back_with_the_change(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            emit(service)
            raise RuntimeError("the business change failed")
    assert WebhookEvent.objects.count() == 0 and WebhookDelivery.objects.count() == 0
    call_command("deliver_webhooks", stdout=StringIO())
    assert receiver.received() == []


def test_one_delivery_per_matching_active_endpoint(service, other_service, receiver, make_endpoint, emit):
    everything = make_endpoint(service, receiver.url("/all")).endpoint
    star = make_endpoint(service, receiver.url("/star"), event_types_filter=["*"]).endpoint
    invoices = make_endpoint(service, receiver.url("/inv"), event_types_filter=["invoice.created"]).endpoint
    make_endpoint(service, receiver.url("/subs"), event_types_filter=["subscription.started"])
    off = make_endpoint(service, receiver.url("/off")).endpoint
    services.set_endpoint_active(endpoint=off, active=False)
    make_endpoint(other_service, receiver.url("/other"))
    event = emit(service)
    assert {d.endpoint_id for d in event.deliveries.all()} == {everything.id, star.id, invoices.id}


def test_delivery_is_queued_only_after_commit(service, receiver, make_endpoint, emit, django_capture_on_commit_callbacks):
    make_endpoint(service, receiver.url())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        emit(service)
    assert len(callbacks) == 1
    d = WebhookDelivery.objects.get()
    assert d.status == WebhookDelivery.PENDING and d.attempts_count == 0


def test_no_endpoint_no_delivery_no_dispatch(service, emit, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = emit(service)
    assert callbacks == [] and event.deliveries.count() == 0


@pytest.mark.parametrize("webhook_type, object_type", [("invoice", "invoice"), ("invoice.created", "webhook_type"),
                                                       ("Invoice.Created", "invoice"), ("a.b", "x-y"),
                                                       ("invoice.created\n", "invoice")])
def test_malformed_types_are_programming_errors(service, webhook_type, object_type):
    with pytest.raises(ValueError):
        services.record_event(service=service, webhook_type=webhook_type, object_type=object_type, payload={})


# --- signatures and verbatim bytes ------------------------------------------------------

def test_every_attempt_sends_the_stored_bytes_signed_both_ways(service, receiver, make_endpoint, emit):
    issued = make_endpoint(service, receiver.url(), signature_algo="hmac")
    receiver.add_faults("/hook", Fault.error(500), Fault.error(502))
    event = emit(service)
    for _ in range(3):
        make_due(WebhookDelivery.objects.filter(event=event))
        delivery.deliver(event_ids=[event.id])
    requests = receiver.received("/hook")
    assert len(requests) == 3
    stored = bytes(event.body)
    for request in requests:
        assert request.body == stored
        assert request.header("webhook-id") == str(event.id) == request.header("x-lago-unique-key")
        assert Webhook(issued.secret).verify(request.body, request.headers) is not None
        assert request.header("x-lago-signature-algorithm") == "hmac"
        # Lago's hmac mode: keyed by the organization's HMAC key, not the endpoint's secret.
        assert lago_check(keys.hmac_key_for(service_id=service.pk), request.body,
                          request.header("x-lago-signature"))
        assert not lago_check(issued.secret, request.body, request.header("x-lago-signature"))
    d = event.deliveries.get()
    assert d.status == WebhookDelivery.SUCCEEDED and d.attempts_count == 3


def test_rotation_signs_with_old_and_new_for_the_overlap(service, receiver, make_endpoint, emit):
    issued = make_endpoint(service, receiver.url())
    rotated = services.rotate_secret(endpoint=issued.endpoint)
    assert rotated.secret != issued.secret
    emit(service)
    call_command("deliver_webhooks", stdout=StringIO())
    [first] = receiver.received()
    Webhook(issued.secret).verify(first.body, first.headers)
    Webhook(rotated.secret).verify(first.body, first.headers)
    # after the overlap only the new secret signs
    WebhookEndpoint.objects.filter(pk=issued.endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    emit(service)
    call_command("deliver_webhooks", stdout=StringIO())
    second = receiver.received()[1]
    Webhook(rotated.secret).verify(second.body, second.headers)
    with pytest.raises(Exception):
        Webhook(issued.secret).verify(second.body, second.headers)


# --- retry policy -----------------------------------------------------------------

def test_default_retry_schedule_is_followed_then_dead_lettered(service, receiver, make_endpoint, emit, settings):
    settings.WEBHOOK_BREAKER_FAILURES = 0  # the retry schedule alone (the breaker is tested in test_fairness)
    make_endpoint(service, receiver.url())
    receiver.set_default(Fault.error(500))
    event = emit(service)
    d = event.deliveries.get()
    delays = []
    for attempt in range(1, settings.WEBHOOK_MAX_ATTEMPTS + 1):
        make_due(d)
        [result] = delivery.deliver(delivery_ids=[d.id])
        d.refresh_from_db()
        assert d.attempts_count == attempt
        if attempt < settings.WEBHOOK_MAX_ATTEMPTS:
            assert result.action == "retry" and d.status == WebhookDelivery.PENDING
            delays.append((d.next_attempt_at - d.last_attempt_at).total_seconds())
    assert d.status == WebhookDelivery.DEAD and d.next_attempt_at is None and d.dead_at is not None
    assert "gave up after 10 attempts" in d.last_error
    policy = delivery.retry_policy()
    for n, delay in enumerate(delays, start=1):
        nominal = policy.nominal_delay_seconds(n)
        assert nominal * 0.8 - 1 <= delay <= nominal * 1.2 + 5, (n, delay)  # + time spent sending
    assert delays[0] < 10  # starts in seconds
    assert sum(delays) >= 24 * 3600
    assert len(receiver.received()) == 10
    attempts = list(d.attempts.all())
    assert [a.attempt_number for a in attempts] == list(range(1, 11))
    assert all(a.status_code == 500 and a.outcome == "failed" and a.response_excerpt == "error" for a in attempts)
    assert all(a.duration_ms >= 0 and a.connected_ip == "127.0.0.1" for a in attempts)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(service, receiver, make_endpoint, emit, status):
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.rate_limited(600, status=status))
    event = emit(service)
    before = timezone.now()
    delivery.deliver(event_ids=[event.id])
    d = event.deliveries.get()
    wait = (d.next_attempt_at - before).total_seconds()
    assert 599 <= wait <= 605
    assert d.attempts.get().status_code == status


def test_gone_disables_the_endpoint_and_stops_deliveries(service, receiver, make_endpoint, emit):
    endpoint = make_endpoint(service, receiver.url()).endpoint
    receiver.add_faults("/hook", Fault.gone())
    first = emit(service)
    second = emit(service)
    results = delivery.deliver(event_ids=[first.id])
    assert results[0].action == "disable_endpoint"
    endpoint.refresh_from_db()
    assert not endpoint.is_active and "410" in endpoint.disabled_reason
    assert first.deliveries.get().status == WebhookDelivery.DEAD
    # the other pending delivery waits; new events create no delivery
    assert delivery.deliver(event_ids=[second.id]) == []
    assert emit(service).deliveries.count() == 0
    assert len(receiver.received()) == 1
    # staff re-enable: the waiting delivery goes out (captured on-commit dispatch aside, run it here)
    services.set_endpoint_active(endpoint=endpoint, active=True)
    assert [r.action for r in delivery.deliver(event_ids=[second.id])] == ["succeeded"]


def test_redirect_is_a_failure_and_not_followed(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.redirect(receiver.url("/moved"), status=301))
    event = emit(service)
    [result] = delivery.deliver(event_ids=[event.id])
    assert result.action == "retry" and result.status_code == 301
    assert receiver.received("/moved") == []
    assert event.deliveries.get().attempts.get().error_kind == "redirect"


def test_timeout_and_slow_receiver(service, receiver, make_endpoint, emit, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.timeout(), Fault.slow(0.3))
    event = emit(service)
    [result] = delivery.deliver(event_ids=[event.id])
    assert result.action == "retry"
    attempt = event.deliveries.get().attempts.get()
    assert attempt.error_kind == "timeout" and attempt.status_code is None and attempt.duration_ms >= 1000
    make_due(event.deliveries.get())
    assert [r.action for r in delivery.deliver(event_ids=[event.id])] == ["succeeded"]


def test_connection_refused_is_recorded(service, emit):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    WebhookEndpoint.objects.create(service=service, url=f"http://127.0.0.1:{port}/h", secret="whsec_" + "A" * 44)
    event = emit(service)
    delivery.deliver(event_ids=[event.id])
    assert event.deliveries.get().attempts.get().error_kind == "connection"


# --- dead letters and replay ------------------------------------------------------------

def test_dead_letter_is_replayable_with_the_same_webhook_id(service, receiver, make_endpoint, emit, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.error(500), Fault.error(500))
    event = emit(service)
    d = event.deliveries.get()
    for _ in range(2):
        make_due(d)
        delivery.deliver(delivery_ids=[d.id])
    d.refresh_from_db()
    assert d.status == WebhookDelivery.DEAD
    assert services.replay_deliveries(delivery_ids=[d.id]) == 1
    d.refresh_from_db()
    assert d.status == WebhookDelivery.PENDING and d.attempts_count == 0 and d.replay_count == 1
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    assert "1 succeeded" in out.getvalue()
    d.refresh_from_db()
    assert d.status == WebhookDelivery.SUCCEEDED
    ids = {r.header("webhook-id") for r in receiver.received()}
    assert ids == {str(event.id)}
    assert [(a.replay_round, a.attempt_number, a.outcome) for a in d.attempts.all()] == [
        (0, 1, "failed"), (0, 2, "failed"), (1, 1, "succeeded")]


def test_replay_many_including_succeeded(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(3)]
    call_command("deliver_webhooks", stdout=StringIO())
    assert services.replay_events(event_ids=[e.id for e in events]) == 3
    call_command("deliver_webhooks", stdout=StringIO())
    assert len(receiver.received()) == 6


def test_replay_leaves_a_delivery_in_flight_alone(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    event = emit(service)
    [claimed] = delivery.claim_due(event_ids=[event.id])
    assert services.replay_deliveries(delivery_ids=[claimed.id]) == 0


# --- claims -----------------------------------------------------------------------

def test_a_claimed_delivery_is_not_claimed_twice(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    event = emit(service)
    assert len(delivery.claim_due(event_ids=[event.id])) == 1
    assert delivery.claim_due(event_ids=[event.id]) == []


def test_expired_claim_is_recorded_as_abandoned_and_sent_again(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    event = emit(service)
    [claimed] = delivery.claim_due(event_ids=[event.id])  # ...and the worker dies here
    WebhookDelivery.objects.filter(pk=claimed.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    [result] = delivery.deliver(event_ids=[event.id])
    assert result.action == "succeeded"
    assert [(a.attempt_number, a.outcome) for a in claimed.attempts.all()] == [(1, "abandoned"), (2, "succeeded")]


def test_deliver_webhooks_attempts_each_due_delivery_once(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    receiver.set_default(Fault.rate_limited(0))  # asks to be retried immediately
    for _ in range(3):
        emit(service)
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    assert "attempted 3" in out.getvalue() and "3 will retry" in out.getvalue()
    assert len(receiver.received()) == 3


# --- SSRF at delivery time ------------------------------------------------------------

def test_ssrf_guard_runs_again_at_delivery_time(service, emit, settings, monkeypatch, make_endpoint):
    settings.WEBHOOK_RESOLVER = "webhooks.testing.dns.resolve_from_env"
    monkeypatch.setenv("WEBHOOK_FAKE_DNS", "hooks.example.test=93.184.215.14")
    make_endpoint(service, "https://hooks.example.test/in")  # public when saved
    monkeypatch.setenv("WEBHOOK_FAKE_DNS", "hooks.example.test=169.254.169.254")  # rebinding
    event = emit(service)
    [result] = delivery.deliver(event_ids=[event.id])
    attempt = event.deliveries.get().attempts.get()
    assert result.action == "retry"
    assert attempt.error_kind == "ssrf" and "private_address" in attempt.error and attempt.connected_ip == ""


def test_deliveries_use_random_jitter(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    receiver.set_default(Fault.error(500))
    events = [emit(service) for _ in range(8)]
    for _ in range(4):
        for e in events:
            make_due(WebhookDelivery.objects.filter(event=e))
        call_command("deliver_webhooks", stdout=StringIO())
    waits = {(d.next_attempt_at - d.last_attempt_at).total_seconds() for d in WebhookDelivery.objects.all()}
    assert len(waits) > 1


def test_one_dispatch_per_transaction(service, receiver, make_endpoint, emit, django_capture_on_commit_callbacks,
                                      monkeypatch):
    make_endpoint(service, receiver.url())
    queued = []
    monkeypatch.setattr(delivery, "_enqueue", lambda name, args: queued.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            kept = [emit(service), emit(service)]
            try:
                with transaction.atomic():
                    emit(service)
                    raise RuntimeError
            except RuntimeError:
                pass
            kept.append(emit(service))
    assert len(callbacks) == 1
    [(name, [ids])] = queued
    assert name == "webhooks.tasks.deliver_events"
    assert set(ids) >= {str(e.id) for e in kept}
    assert WebhookEvent.objects.count() == 3



def test_deleting_an_endpoint_dead_letters_its_pending_deliveries(service, receiver, make_endpoint, emit):
    endpoint = make_endpoint(service, receiver.url()).endpoint
    event = emit(service)
    services.delete_endpoint(endpoint=endpoint)
    d = event.deliveries.get()
    assert d.status == WebhookDelivery.DEAD and d.last_error == "endpoint deleted"
    assert emit(service).deliveries.count() == 0
    call_command("deliver_webhooks", stdout=StringIO())
    assert receiver.received() == []


def test_publishing_failure_leaves_the_outbox_to_the_sweeper(service, receiver, make_endpoint, emit, monkeypatch):
    from celery import Celery

    make_endpoint(service, receiver.url())
    dead_broker = Celery("dead", broker="redis://127.0.0.1:1/0", set_as_current=False)
    monkeypatch.setattr(delivery, "celery_app", lambda: dead_broker)
    event = emit(service)
    assert delivery.dispatch_events([event.id]) is False
    d = event.deliveries.get()
    assert d.status == WebhookDelivery.PENDING and d.dispatched_until is None
    assert delivery.sweep_due() == 0  # still down: the rows stay for the next sweep
    assert WebhookDelivery.objects.get(pk=d.pk).dispatched_until is None


def test_a_task_delivers_every_endpoint_of_its_events_beyond_one_claim_batch(service, receiver, make_endpoint,
                                                                              emit):
    for i in range(3):
        make_endpoint(service, receiver.url(f"/e{i}"))
    events = [emit(service) for _ in range(5)]
    results = delivery.deliver(event_ids=[e.id for e in events], limit=4)
    assert len(results) == 15 and len(receiver.received()) == 15


def test_delivery_health_reports_backlog_and_dead_letters(service, receiver, make_endpoint, emit, settings):
    from webhooks.selectors import delivery_health

    settings.WEBHOOK_MAX_ATTEMPTS = 1
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.error(500))
    first = emit(service)
    emit(service)
    delivery.deliver(event_ids=[first.id])
    health = delivery_health(now=timezone.now() + timedelta(seconds=30))
    assert health["due"] == 1 and health["dead_letters_24h"] == 1 and health["oldest_due_seconds"] >= 30


def test_lease_covers_every_sending_round_of_a_batch(service, receiver, make_endpoint, emit, settings):
    settings.WEBHOOK_SEND_CONCURRENCY = 4
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(10)]  # 3 rounds of 4
    before = timezone.now()
    claimed = delivery.claim_due(event_ids=[e.id for e in events])
    lease = (claimed[0].claimed_until - before).total_seconds()
    assert lease >= settings.WEBHOOK_CLAIM_LEASE_SECONDS + 2 * settings.WEBHOOK_TIMEOUT_SECONDS - 1


def test_a_task_that_finds_a_backlog_drains_it_in_batches(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(120)]
    # Fresh deliveries: a task sends only its own. (Made fresh explicitly: creating 120 events
    # can take longer than BACKLOG_SIGN on a loaded machine.)
    WebhookDelivery.objects.update(created_at=timezone.now(), next_attempt_at=timezone.now())
    assert len(delivery.deliver(event_ids=[events[0].id], top_up=True)) == 1
    # Deliveries waiting for longer than BACKLOG_SIGN: the task keeps topping up until none is left.
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(seconds=5))
    assert len(delivery.deliver(event_ids=[events[1].id], top_up=True)) == 119
    assert len(receiver.received()) == 120
    assert delivery.deliver(event_ids=[events[2].id], top_up=True) == []  # its own task is now a no-op


def test_a_no_op_task_still_picks_up_deliveries_stuck_behind_it(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    done, stuck = emit(service), emit(service)
    delivery.deliver(event_ids=[done.id])
    # `stuck` has been due for a while (its own message is far back in the queue)
    WebhookDelivery.objects.filter(event=stuck).update(next_attempt_at=timezone.now() - timedelta(seconds=3))
    assert [r.action for r in delivery.deliver(event_ids=[done.id], top_up=True)] == ["succeeded"]
    assert stuck.deliveries.get().status == WebhookDelivery.SUCCEEDED
    # nothing pending, nothing lagging: a no-op
    assert delivery.deliver(event_ids=[done.id], top_up=True) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_delivery(service, receiver, make_endpoint, emit):
    import threading

    from django.db import connection

    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(40)]
    ids = [e.id for e in events]
    barrier = threading.Barrier(4)
    taken: list[list] = []

    def claim():
        try:
            barrier.wait()
            taken.append([d.id for d in delivery.claim_due(event_ids=ids, limit=40)])
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for batch in taken for i in batch]
    assert len(everything) == len(set(everything)) == 40
