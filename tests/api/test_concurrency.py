"""Many clients sending the same events at the same time: each is stored exactly once."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

from metering.models import UsageEvent
from tests.api.conftest import create_catalogue, create_subscription
from tests.conftest import make_api_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_identical_events_are_counted_once(live_server, api_key):
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    now = int(time.time())
    batch = {"events": [{"transaction_id": f"tx-{i}", "external_subscription_id": "sub_1", "code": "cpu_seconds",
                         "timestamp": str(now), "properties": {"cpu_seconds": i}} for i in range(50)]}
    single = {"event": {**batch["events"][7]}}
    statuses: list[int] = []
    start = threading.Barrier(8)

    def send(kind: str) -> None:
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"}) as http:
            start.wait()
            for _ in range(3):
                if kind == "batch":
                    statuses.append(http.post("/api/v1/events/batch", json=batch).status_code)
                else:
                    statuses.append(http.post("/api/v1/events", json=single).status_code)

    threads = [threading.Thread(target=send, args=("batch" if n % 2 else "single",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 24
    assert UsageEvent.objects.count() == 50
    assert sorted(UsageEvent.objects.values_list("value", flat=True)) == list(range(50))


def test_concurrent_conflicting_payloads_store_one_and_reject_the_rest(live_server, api_key):
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    results: list[tuple[int, int]] = []
    start = threading.Barrier(6)

    def send(value: int) -> None:
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"}) as http:
            start.wait()
            response = http.post("/api/v1/events", json={"event": {
                "transaction_id": "same", "external_subscription_id": "sub_1", "code": "cpu_seconds",
                "timestamp": None, "properties": {"cpu_seconds": value}}})
            results.append((value, response.status_code))

    threads = [threading.Thread(target=send, args=(v,)) for v in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [value for value, status in results if status == 200]
    assert len(winners) == 1 and sorted(s for _, s in results) == [200] + [422] * 5
    assert list(UsageEvent.objects.values_list("value", flat=True)) == [winners[0]]


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(live_server, api_key):
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    events = [{"transaction_id": f"tx-{i}", "external_subscription_id": "sub_1", "code": "cpu_seconds",
               "timestamp": None, "properties": {"cpu_seconds": i}} for i in range(100)]
    orders = [events, list(reversed(events))] * 3
    statuses: list[int] = []
    start = threading.Barrier(len(orders))

    def send(batch) -> None:
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"}) as http:
            start.wait()
            statuses.append(http.post("/api/v1/events/batch", json={"events": batch}, timeout=30).status_code)

    threads = [threading.Thread(target=send, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(orders)
    assert UsageEvent.objects.count() == 100


def test_a_subscription_write_does_not_hold_up_other_subscriptions_events(live_server, api_key):
    """Updating one subscription locks that row only, not its service, plan or customer:
    the usage-event foreign keys of every other subscription need those rows."""
    from django.db import connection, transaction

    from metering import services
    from metering.models import Subscription

    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client, external_id="sub_1")
    create_subscription(client, external_id="sub_2")
    locked, release = threading.Event(), threading.Event()

    def hold_an_update() -> None:
        try:
            with transaction.atomic():
                services.update_subscription(subscription=Subscription.objects.get(external_id="sub_1"),
                                             data={"name": "renamed"})
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    writer = threading.Thread(target=hold_an_update)
    writer.start()
    try:
        assert locked.wait(10)
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"}) as http:
            response = http.post("/api/v1/events", timeout=5, json={"event": {
                "transaction_id": "t", "external_subscription_id": "sub_2", "code": "cpu_seconds",
                "timestamp": None, "properties": {"cpu_seconds": 1}}})
        assert response.status_code == 200
    finally:
        release.set()
        writer.join()
