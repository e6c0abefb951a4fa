"""Delivery through real Celery workers on Redis: on-commit dispatch, the sweeper,
a broker outage, and a worker killed mid-delivery."""

from __future__ import annotations

import base64
import socket
import subprocess
import time

import jwt
import pytest
import redis
from celery import Celery
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from tests.conftest import CeleryWorker, subprocess_environment
from webhooks import delivery, keys
from webhooks.models import WebhookDelivery
from webhooks.testing.receiver import Fault

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_RETRIES = {"WEBHOOK_RETRY_BASE_SECONDS": "1", "WEBHOOK_RETRY_JITTER_PERCENT": "0"}


def wait_until(predicate, *, timeout=30.0, every=0.2, action=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if action is not None:
            action()
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def assert_signed(request, secret):
    assert Webhook(secret).verify(request.body, request.headers) is not None
    # Lago's default (jwt), checked as Lago's docs show, with the key the worker signed with.
    assert request.header("x-lago-signature-algorithm") == "jwt"
    claims = jwt.decode(request.header("x-lago-signature"), base64.b64decode(keys.public_key_base64()),
                        algorithms=["RS256"], issuer="https://api.getlago.com")
    assert claims["data"] == request.body.decode()


def test_committed_event_is_delivered_by_the_worker(start_celery_worker, service, receiver, make_endpoint, emit):
    start_celery_worker(queues="webhooks")
    issued = make_endpoint(service, receiver.url())
    event = emit(service)  # autocommit: queued on commit
    [request] = receiver.wait_for(1)
    assert request.body == bytes(event.body)
    assert request.header("webhook-id") == str(event.id)
    assert_signed(request, issued.secret)
    wait_until(lambda: WebhookDelivery.objects.filter(event=event, status="succeeded").exists())


def test_failed_attempt_is_retried_through_the_sweeper(start_celery_worker, service, receiver, make_endpoint, emit):
    start_celery_worker(queues="webhooks", env=FAST_RETRIES)
    issued = make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.error(503))
    event = emit(service)
    receiver.wait_for(1)
    # the beat sweeper's job, run by hand: queue whatever is due
    wait_until(lambda: len(receiver.received()) >= 2, action=delivery.sweep_due, every=0.5)
    first, second = receiver.received()[:2]
    assert first.body == second.body and first.header("webhook-id") == second.header("webhook-id")
    assert_signed(second, issued.secret)
    d = wait_until(lambda: WebhookDelivery.objects.filter(event=event, status="succeeded").first())
    assert [a.status_code for a in d.attempts.all()] == [503, 200]


def test_worker_killed_mid_delivery_sends_again_with_same_webhook_id(
    start_celery_worker, service, receiver, make_endpoint, emit,
):
    env = {"WEBHOOK_CLAIM_LEASE_SECONDS": "2", "WEBHOOK_TIMEOUT_SECONDS": "30"}
    worker = start_celery_worker(queues="webhooks", env=env)
    issued = make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.timeout(3600))  # holds the first request open
    event = emit(service)
    receiver.wait_for(1)  # the worker is now mid-delivery
    worker.kill()
    start_celery_worker(queues="webhooks", env=env)
    wait_until(lambda: len(receiver.received()) >= 2, action=delivery.sweep_due, every=0.5)
    first, second = receiver.received()[:2]
    assert first.header("webhook-id") == second.header("webhook-id") == str(event.id)
    assert second.body == bytes(event.body)
    assert_signed(second, issued.secret)
    d = wait_until(lambda: WebhookDelivery.objects.filter(event=event, status="succeeded").first())
    assert [a.outcome for a in d.attempts.all()] == ["abandoned", "succeeded"]


# --- broker outage ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A throwaway redis-server for this test only: the shared one is never stopped."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: self._ping(client), timeout=10, every=0.05)

    @staticmethod
    def _ping(client) -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_events_created_while_broker_is_down_are_delivered_after_it_returns(
    private_redis, service, receiver, make_endpoint, emit, monkeypatch,
):
    app = Celery("fb-broker-outage", broker=private_redis.url, set_as_current=False)
    app.conf.update(task_routes=settings.CELERY_TASK_ROUTES, task_serializer="json",
                    broker_connection_retry_on_startup=True)
    monkeypatch.setattr(delivery, "celery_app", lambda: app)
    worker = CeleryWorker(queues="webhooks", concurrency=1,
                          env=subprocess_environment(REDIS_URL=private_redis.url))
    try:
        wait_until(lambda: worker.process.poll() is None and app.control.ping(destination=[worker.name], timeout=0.5),
                   timeout=60)
        issued = make_endpoint(service, receiver.url())
        private_redis.stop()
        started = time.monotonic()
        events = [emit(service) for _ in range(3)]  # each commits; publishing fails fast
        assert time.monotonic() - started < 10
        pending = WebhookDelivery.objects.filter(event__in=events, status="pending")
        assert pending.count() == 3 and not pending.filter(dispatched_until__isnull=False).exists()
        assert delivery.sweep_due() == 0  # broker still down: nothing lost, nothing queued
        assert receiver.received() == []
        private_redis.start()  # same port: the worker reconnects
        wait_until(lambda: len(receiver.received()) >= 3, action=delivery.sweep_due, every=1.0, timeout=90)
        got = {r.header("webhook-id") for r in receiver.received()}
        assert got == {str(e.id) for e in events}
        for request in receiver.received():
            assert_signed(request, issued.secret)
    finally:
        worker.stop()


def test_beat_runs_the_sweeper_on_the_webhooks_queue():
    from billing_project.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["webhooks-sweep-due-deliveries"]
    assert entry["task"] == "webhooks.tasks.sweep_due_deliveries"
    assert entry["schedule"].total_seconds() <= 10
    app.loader.import_default_modules()
    assert "webhooks.tasks.sweep_due_deliveries" in app.tasks
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "webhooks"


def test_real_beat_sweeps_deliveries_whose_dispatch_was_lost(
    start_celery_worker, service, receiver, make_endpoint, emit, monkeypatch, tmp_path,
):
    import sys
    import uuid

    from tests.conftest import REPO_ROOT

    issued = make_endpoint(service, receiver.url())
    monkeypatch.setattr(delivery, "_enqueue", lambda name, args: False)  # the broker "was down"
    events = [emit(service) for _ in range(2)]
    assert not WebhookDelivery.objects.filter(dispatched_until__isnull=False).exists()
    env = {"WEBHOOK_SWEEP_INTERVAL_SECONDS": "1"}
    start_celery_worker(queues="webhooks", env=env)
    beat = subprocess.Popen(
        # The production scheduler (django-celery-beat's DatabaseScheduler, from settings).
        [sys.executable, "-m", "celery", "-A", "billing_project", "beat",
         "-s", str(tmp_path / f"beat-{uuid.uuid4().hex[:6]}"), "--loglevel", "WARNING"],
        cwd=REPO_ROOT, env=subprocess_environment(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        requests = receiver.wait_for(2, timeout=60)
    finally:
        beat.terminate()
        beat.wait(timeout=15)
    assert {r.header("webhook-id") for r in requests} == {str(e.id) for e in events}
    for request in requests:
        assert_signed(request, issued.secret)
