"""#17 F0: a broker outage stops nothing for good.

A real private Redis is stopped and restarted under a real worker (all queues) and a real
beat, while customers, a subscription and events are created through the API. Every
webhook arrives exactly once, rating and the Odoo sync run afterwards, and nobody
restarts anything. Also the root cause, at kombu's level: a late acknowledgement on the
channel of a connection the consumer closed.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from celery import Celery
from django.conf import settings
from kombu import Connection, Queue
from lago_python_client.client import Client
from lago_python_client.models import BillableMetric, Charge, Charges, Customer, Event, Plan, Subscription

from billing_project.celery import app as project_app  # noqa: F401 - installs the guard under test
from metering.models import RatedUsage
from metering.models import Subscription as SubscriptionModel
from odoo_bridge.client import reset_client
from odoo_bridge.testing import FakeOdoo
from tests.conftest import REPO_ROOT, CeleryWorker, subprocess_environment
from webhooks import delivery
from webhooks.models import WebhookEvent
from webhooks.services import create_endpoint

from .test_worker import PrivateRedis, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_odoo(settings):
    reset_client()
    with FakeOdoo(version="17.0", price_digits=2) as server:
        settings.ODOO_URL, settings.ODOO_DB = server.url, server.db
        settings.ODOO_USER, settings.ODOO_API_KEY = server.login, server.api_key
        yield server
    reset_client()


def test_a_late_ack_on_the_channel_of_a_closed_connection_is_a_connection_error(private_redis):
    """What killed the worker: kombu rebuilt the closed channel's pool from ``transport.client``
    (None once the connection is closed) and raised AttributeError, which ``ack_log_error``
    does not catch. Guarded, it is a connection error: logged, and the worker goes on."""
    conn = Connection(private_redis.url)
    queue = Queue("f0-late-ack", routing_key="f0-late-ack")
    with conn.Producer() as producer:
        producer.publish({"n": 1}, routing_key="f0-late-ack", declare=[queue])
    consumer_conn = conn.clone()
    channel = consumer_conn.channel()
    message = queue(channel).get(no_ack=False)
    assert message is not None
    # The state the consumer leaves behind when it closes a lost connection.
    consumer_conn.transport.client = None
    channel._disconnect_pools()
    message.ack_log_error(logging.getLogger("f0"), consumer_conn.connection_errors)  # must not raise
    assert message.acknowledged is False  # not acked: the message is redelivered, never lost
    # This dead channel would try to restore the message again at interpreter exit.
    channel.qos._on_collect.cancel()
    channel.qos._delivered.clear()
    conn.release()


def _lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


def test_workers_survive_a_broker_outage_and_deliver_everything_once(
        private_redis, live_server, api_key, service, receiver, fake_odoo, monkeypatch, tmp_path):
    # The API (live_server, in this process) publishes to the private broker.
    publisher = Celery("fb-f0-outage", broker=private_redis.url, set_as_current=False)
    publisher.conf.update(task_routes=settings.CELERY_TASK_ROUTES, task_serializer="json")
    monkeypatch.setattr(delivery, "celery_app", lambda: publisher)
    delivery._drop_publisher_connection()
    env = subprocess_environment(
        REDIS_URL=private_redis.url, DJANGO_DEBUG="1",
        ODOO_URL=fake_odoo.url, ODOO_DB=fake_odoo.db, ODOO_USER=fake_odoo.login, ODOO_API_KEY=fake_odoo.api_key,
        WEBHOOK_SWEEP_INTERVAL_SECONDS="1", RATING_INTERVAL_SECONDS="2", ODOO_SYNC_INTERVAL_SECONDS="2",
    )
    # As scripts/run starts them: one worker on every queue, and beat.
    worker = CeleryWorker(queues=",".join(settings.CELERY_WORKER_QUEUES), concurrency=2, env=env)
    beat_log = tmp_path / "beat.log"
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "billing_project", "beat", "--loglevel", "INFO"],
                            cwd=REPO_ROOT, env=env, stdout=beat_log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: worker.process.poll() is None
                   and publisher.control.ping(destination=[worker.name], timeout=0.5), timeout=60)
        lago = _lago(live_server, api_key)
        create_endpoint(service=service, url=receiver.url("/hooks"))
        metric = lago.billable_metrics.create(BillableMetric(
            name="API calls", code="api_calls", aggregation_type="sum_agg", field_name="calls"))
        lago.plans.create(Plan(name="Pro", code="pro", interval="monthly", amount_cents=4900, amount_currency="CAD",
                               pay_in_advance=False, charges=Charges(__root__=[Charge(
                                   billable_metric_id=metric.lago_id, charge_model="standard",
                                   properties={"amount": "0.02"})])))
        lago.customers.create(Customer(external_id="before", name="Before Ltd", email="ap@before.test",
                                       currency="CAD", country="CA", state="ON"))
        wait_until(lambda: len(receiver.received("/hooks")) >= 1, timeout=60)  # the worker is delivering

        private_redis.stop()  # the outage: the API keeps answering, the outbox keeps everything
        for i in range(5):
            lago.customers.create(Customer(external_id=f"during-{i}", name=f"During {i}", email=f"ap{i}@during.test",
                                           currency="CAD", country="CA", state="ON"))
        lago.subscriptions.create(Subscription(external_customer_id="during-0", plan_code="pro",
                                               external_id="dep-during", billing_time="anniversary"))
        stamp = int(time.time()) + 2  # after the subscription started
        for i in range(3):
            lago.events.create(Event(transaction_id=f"tx-during-{i}", external_subscription_id="dep-during",
                                     code="api_calls", timestamp=stamp, properties={"calls": "50"}))
        time.sleep(3)  # a few seconds of outage, as in the report
        private_redis.start()  # same port; nobody restarts the worker or beat

        expected = {str(i) for i in WebhookEvent.objects.filter(service=service).values_list("id", flat=True)}
        assert len(expected) >= 7  # 6 customers, a subscription
        wait_until(lambda: {r.header("webhook-id") for r in receiver.received("/hooks")} >= expected, timeout=150)
        subscription = SubscriptionModel.objects.get(service=service, external_id="dep-during")
        # Rating ran after the outage: the events sent during it are rated (150 calls x 0.02).
        wait_until(lambda: RatedUsage.objects.filter(subscription=subscription, amount=Decimal("3")).exists(),
                   timeout=120)
        # The Odoo sync ran after the outage: the subscription created during it is an order.
        wait_until(lambda: fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{subscription.pk}"]]),
                   timeout=120)
        # Exactly once: let the sweeper run a few more rounds, then count.
        time.sleep(4)
        ids = [r.header("webhook-id") for r in receiver.received("/hooks")]
        assert sorted(ids) == sorted(expected), "every webhook exactly once"
        types = sorted(json.loads(r.body)["webhook_type"] for r in receiver.received("/hooks"))
        assert types.count("customer.created") == 6
        assert worker.process.poll() is None, worker.log()
        assert beat.poll() is None, beat_log.read_text()
        assert "Unrecoverable error" not in worker.log()
    finally:
        beat.terminate()
        try:
            beat.wait(timeout=15)
        except subprocess.TimeoutExpired:
            beat.kill()
        worker.stop()
