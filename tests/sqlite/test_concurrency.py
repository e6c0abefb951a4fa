"""Concurrent use of the embedded default: every acknowledged event is stored exactly once,
and nobody gets a 500 while other threads and processes write the same SQLite file."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from identity import keys
from identity.models import Service
from metering import rating
from metering.models import RatedUsage, Subscription, UsageEvent
from metering.tasks import rate_open_windows
from tests.conftest import make_api_client
from tests.sqlite.conftest import post_json
from tests.sqlite.test_ingest import event_body, make_subscription
from webhooks import services as webhook_services
from webhooks.testing.receiver import WebhookReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SENDERS = 8
EVENTS_PER_SENDER = 20


class Tally:
    """Status codes of every request, and the transaction ids that were acknowledged (200)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.acknowledged: Counter = Counter()
        self.values: dict[str, Decimal] = {}

    def record(self, status: int, transaction_ids: list[str], values: list[Decimal]) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == 200:
                for tx, value in zip(transaction_ids, values):
                    self.acknowledged[tx] += 1
                    self.values[tx] = value


def assert_stored_exactly_once(tally: Tally) -> None:
    assert set(tally.statuses) == {200}, tally.statuses  # no 500, no 4xx either
    stored = Counter(UsageEvent.objects.values_list("transaction_id", flat=True))
    assert set(stored) == set(tally.acknowledged)
    assert set(stored.values()) == {1}  # exactly once, resends included
    assert {tx: v for tx, v in UsageEvent.objects.values_list("transaction_id", "value")} == tally.values


def wait_until(condition, *, what: str, timeout: float = 90) -> None:  # ok-float: seconds
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def rated_units() -> Decimal | None:
    return RatedUsage.objects.aggregate(units=Sum("units"))["units"]


def test_threads_ingest_resend_and_rate_concurrently(service, api_key):
    """One process, many connections: senders (single events, batches, resends of each
    other's events) while rating and customer writes (webhook outbox) run beside them."""
    subscription = make_subscription(service)
    webhook_services.create_endpoint(service=service, url="http://127.0.0.1:9/hook")
    tally = Tally()
    done = threading.Event()
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        client = make_api_client(api_key)
        try:
            for i in range(EVENTS_PER_SENDER):
                transaction_ids = [f"t{n}-{i}"]
                if i % 4 == 0:  # the next sender's event too: identical resends, concurrently
                    transaction_ids.append(f"t{(n + 1) % SENDERS}-{i}")
                for tx in transaction_ids:
                    response = client.post("/api/v1/events", event_body(subscription, tx, cpu_seconds=1000 + i),
                                           format="json")
                    tally.record(response.status_code, [tx], [Decimal(1000 + i)])
            batch = [event_body(subscription, f"batch-{n}-{k}", cpu_seconds=k)["event"] for k in range(10)]
            response = client.post("/api/v1/events/batch", {"events": batch}, format="json")
            tally.record(response.status_code, [e["transaction_id"] for e in batch], [Decimal(k) for k in range(10)])
        finally:
            connection.close()

    def rater() -> None:
        try:
            while not done.wait(0.05):
                rating.rate_open_windows()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def customers() -> None:
        client = make_api_client(api_key)
        try:
            for k in range(5):
                response = client.post("/api/v1/customers", {"customer": {"external_id": f"c-{k}"}}, format="json")
                tally.record(response.status_code, [], [])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    background = [threading.Thread(target=rater), threading.Thread(target=customers)]
    for thread in background:
        thread.start()
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(sender, range(SENDERS)))
    done.set()
    for thread in background:
        thread.join(timeout=120)

    assert errors == []
    assert_stored_exactly_once(tally)
    assert UsageEvent.objects.count() == SENDERS * (EVENTS_PER_SENDER + 10)
    assert sum(tally.acknowledged.values()) == SENDERS * (EVENTS_PER_SENDER + EVENTS_PER_SENDER // 4 + 10)
    rating.rate_open_windows()
    assert rated_units() == sum(tally.values.values())


def test_web_and_worker_processes_started_by_scripts_run_store_every_event_once(scripts_run):
    """``scripts/run`` (runserver + Celery worker with beat, file-system broker) and this
    test process all write one SQLite file at the same time."""
    with WebhookReceiver() as receiver:
        out = StringIO()
        call_command("seed_demo", stdout=out)
        api_key = re.search(r"fb_[0-9a-f]{8}_\S{43}", out.getvalue()).group()
        service = Service.objects.get(code="demo")
        webhook_services.create_endpoint(service=service, url=receiver.url())
        in_process_key = keys.issue_key(service=service, name="in-process").plaintext
        demo = Subscription.objects.get(service=service, external_id="demo-sub-1")
        tally = Tally()
        running = scripts_run()
        log = running.log()
        assert f"Starting development server at http://127.0.0.1:{running.port}/" in log
        assert f"API docs  http://127.0.0.1:{running.port}/api/v1/docs" in log

        def http_sender(n: int) -> None:
            for i in range(EVENTS_PER_SENDER):
                tx = f"http-{n}-{i}"
                status, _ = post_json(running.base_url + "/api/v1/events",
                                      event_body(demo, tx, cpu_seconds=1000 + i), api_key=api_key)
                tally.record(status, [tx], [Decimal(1000 + i)])

        def http_batches(n: int) -> None:
            for b in range(3):
                batch = [event_body(demo, f"hb-{n}-{b}-{k}", cpu_seconds=k)["event"] for k in range(10)]
                status, _ = post_json(running.base_url + "/api/v1/events/batch", {"events": batch}, api_key=api_key)
                tally.record(status, [e["transaction_id"] for e in batch], [Decimal(k) for k in range(10)])

        def http_customers() -> None:
            for k in range(5):
                status, _ = post_json(running.base_url + "/api/v1/customers",
                                      {"customer": {"external_id": f"cust-{k}"}}, api_key=api_key)
                tally.record(status, [], [])

        def in_process_sender(n: int) -> None:
            client = make_api_client(in_process_key)
            try:
                for i in range(15):
                    tx = f"local-{n}-{i}"
                    response = client.post("/api/v1/events", event_body(demo, tx, cpu_seconds=7), format="json")
                    tally.record(response.status_code, [tx], [Decimal(7)])
            finally:
                connection.close()

        def queue_rating() -> None:
            for _ in range(3):
                rate_open_windows.delay()
                time.sleep(0.5)

        jobs = ([(http_sender, n) for n in range(SENDERS)] + [(http_batches, n) for n in range(2)]
                + [(in_process_sender, n) for n in range(2)] + [(http_customers, None), (queue_rating, None)])
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [pool.submit(job) if arg is None else pool.submit(job, arg) for job, arg in jobs]
            for future in futures:
                future.result()

        assert_stored_exactly_once(tally)
        assert UsageEvent.objects.count() == SENDERS * EVENTS_PER_SENDER + 2 * 3 * 10 + 2 * 15
        # The worker writes too: it delivers the customers' webhooks and rates the usage.
        wait_until(lambda: len(receiver.received()) >= 5, what="the worker to deliver 5 webhooks")
        rate_open_windows.delay()
        expected = sum(tally.values.values())
        wait_until(lambda: rated_units() == expected, what=f"the worker to rate {expected} units")
        # Stopped as ``kill <pid>`` would: the script takes the web server and the worker with it.
        running.stop()
        assert running.process.returncode == 143
        assert running.processes_left() == []
        log = running.log()
        assert "database is locked" not in log and "Traceback" not in log, log[-20_000:]
