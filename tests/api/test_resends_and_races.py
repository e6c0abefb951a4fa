"""Identical resends and retries racing their originals, through the HTTP API.

An identical resend is a success answered with the stored event; a different payload
under a stored key is 422 ``value_already_exist`` and the whole request stores nothing;
every acknowledged event is stored exactly once, whatever the interleaving.
"""
from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest
from django.db import connection, connections

from metering.models import UsageEvent, UsageEventKey
from tests.api.conftest import create_catalogue, create_subscription
from tests.conftest import database_url_for_subprocesses, make_api_client

# Within the subscriptions' open window.
NOW = str(int(time.time()))


def event(n: int, value: int | None = None, subscription: str = "sub_1") -> dict:
    return {"transaction_id": f"tx-{n}", "external_subscription_id": subscription, "code": "cpu_seconds",
            "timestamp": NOW, "properties": {"cpu_seconds": n if value is None else value}}


@pytest.mark.django_db
def test_identical_resends_answer_the_stored_events_and_store_nothing(api_client, subscription):
    batch = {"events": [event(n) for n in range(5)]}
    first = api_client.post("/api/v1/events/batch", batch, format="json")
    assert first.status_code == 200, first.content
    again = api_client.post("/api/v1/events/batch", batch, format="json")
    assert again.status_code == 200, again.content
    assert again.json() == first.json()  # same lago ids, created_at of the first store
    single = api_client.post("/api/v1/events", {"event": event(3)}, format="json")
    assert single.status_code == 200
    assert single.json()["event"] == first.json()["events"][3]
    # A batch mixing resends and new events stores the new ones only.
    mixed = api_client.post("/api/v1/events/batch", {"events": [event(n) for n in range(3, 8)]}, format="json")
    assert mixed.status_code == 200
    assert mixed.json()["events"][:2] == first.json()["events"][3:]
    assert sorted(UsageEvent.objects.values_list("transaction_id", flat=True)) == [f"tx-{n}" for n in range(8)]
    assert UsageEventKey.objects.count() == 8


@pytest.mark.django_db
def test_a_different_payload_under_a_stored_key_is_value_already_exist_and_stores_nothing(api_client,
                                                                                         subscription):
    assert api_client.post("/api/v1/events", {"event": event(1)}, format="json").status_code == 200
    single = api_client.post("/api/v1/events", {"event": event(1, value=99)}, format="json")
    assert single.status_code == 422
    assert single.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    batch = api_client.post("/api/v1/events/batch", {"events": [event(0), event(1, value=99), event(2)]},
                            format="json")
    assert batch.status_code == 422
    assert batch.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert list(UsageEvent.objects.values_list("transaction_id", "value")) == [("tx-1", 1)]
    assert UsageEventKey.objects.count() == 1


@pytest.mark.django_db
def test_a_transaction_id_is_found_without_its_subscription_through_an_index(api_client, subscription):
    """GET /events/{transaction_id} without external_subscription_id must not scan the
    service's events: the key table's primary key leads with (service, transaction_id)."""
    create_subscription(api_client, external_id="sub_2", customer="cus_2")
    assert api_client.post("/api/v1/events/batch", {"events": [event(1), event(2, subscription="sub_2")]},
                           format="json").status_code == 200
    response = api_client.get("/api/v1/events/tx-2")
    assert response.status_code == 200
    assert response.json()["event"]["external_subscription_id"] == "sub_2"
    assert api_client.get("/api/v1/events/tx-2?external_subscription_id=sub_1").status_code == 404

    from django.db import connection

    from identity.models import Service

    service = Service.objects.get(code="nexacloud")
    query = UsageEventKey.objects.filter(service=service, transaction_id="tx-2").order_by("-event_id")[:1]
    sql, params = query.values_list("event_id", "timestamp").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "metering_usageeventkey_pkey" in plan and "Seq Scan" not in plan, plan


@pytest.mark.django_db(transaction=True)
def test_retries_racing_their_originals_store_every_event_once(live_server, api_key):
    """Two clients send the same requests at the same instant (a retry racing its
    original), and batches that overlap only in part race too: every request is
    acknowledged (or refused as a conflict when the payload differs), and every
    acknowledged event is stored exactly once."""
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    create_subscription(client, external_id="sub_2", customer="cus_2")
    rounds = 6
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def requests_of(sender: int, round_: int) -> list[tuple[str, dict]]:
        base = round_ * 100
        same_batch = [event(base + n, subscription=f"sub_{1 + n % 2}") for n in range(20)]
        # Senders 4 and 5 overlap the identical batches in part (keys base+10 .. base+29).
        overlap = [event(base + n, subscription=f"sub_{1 + n % 2}") for n in range(10, 30)]
        if sender < 2:
            return [("/api/v1/events/batch", {"events": same_batch})]
        if sender < 4:
            return [("/api/v1/events", {"event": event(base + 50 + k)}) for k in range(5)]
        return [("/api/v1/events/batch", {"events": overlap})]

    def send(sender: int) -> None:
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"},
                          timeout=30) as http:
            for round_ in range(rounds):
                barrier.wait()
                for path, body in requests_of(sender, round_):
                    response = http.post(path, json=body)
                    with lock:
                        results.append((path, response.status_code))

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for _, status in results] == [200] * len(results)
    expected = {f"tx-{round_ * 100 + n}" for round_ in range(rounds) for n in [*range(30), *range(50, 55)]}
    stored = list(UsageEvent.objects.values_list("transaction_id", flat=True))
    assert sorted(stored) == sorted(expected)  # each once
    assert UsageEventKey.objects.count() == len(expected)
    # Each stored event carries its own payload.
    assert all(int(value) == int(tx.split("-")[1]) for tx, value in
               UsageEvent.objects.values_list("transaction_id", "value"))


@pytest.mark.django_db(transaction=True)
def test_racing_conflicting_batches_store_one_of_them_whole(live_server, api_key):
    """Batches that share a key with different payloads, sent at the same instant: one
    is stored whole, the others get value_already_exist and store nothing."""
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(4)

    def send(sender: int) -> None:
        own = [event(1000 * (sender + 1) + n) for n in range(10)]
        shared = event(7, value=sender)
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {api_key}"},
                          timeout=30) as http:
            barrier.wait()
            statuses[sender] = http.post("/api/v1/events/batch", json={"events": [*own, shared]}).status_code

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [sender for sender, status in statuses.items() if status == 200]
    assert len(winners) == 1 and sorted(statuses.values()) == [200, 422, 422, 422]
    winner = winners[0]
    stored = set(UsageEvent.objects.values_list("transaction_id", flat=True))
    assert stored == {"tx-7", *(f"tx-{1000 * (winner + 1) + n}" for n in range(10))}
    assert UsageEvent.objects.get(transaction_id="tx-7").value == winner


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_payload", [True, False], ids=["identical", "different-payload"])
def test_a_key_committed_by_a_concurrent_writer_during_the_store_is_read_back(api_client, api_key, subscription,
                                                                                same_payload):
    """The store statement's snapshot predates a key another writer commits while the
    statement waits on it: the request reads that key back (a third statement) and answers
    with the stored event, or value_already_exist for another payload, never a second row."""
    body = {"event": event(1)}
    first = api_client.post("/api/v1/events", body, format="json")
    assert first.status_code == 200, first.content
    # Keep the stored rows aside, then give them to a writer that holds them uncommitted.
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE race_keys AS SELECT * FROM metering_usageeventkey")
        cursor.execute("CREATE TABLE race_events AS SELECT * FROM metering_usageevent")
        if not same_payload:
            cursor.execute("UPDATE race_keys SET payload_hash = repeat('0', 64)")
        cursor.execute("DELETE FROM metering_usageeventkey")
        cursor.execute("DELETE FROM metering_usageevent")
    answers: list = []

    def send() -> None:
        try:
            answers.append(make_api_client(api_key).post("/api/v1/events", body, format="json"))
        finally:
            connections.close_all()  # this thread's own connection

    request = threading.Thread(target=send)
    writer = psycopg.connect(database_url_for_subprocesses())
    try:
        writer.execute("INSERT INTO metering_usageeventkey SELECT * FROM race_keys")
        writer.execute("INSERT INTO metering_usageevent SELECT * FROM race_events")
        request.start()
        # The request's insert waits on the writer's uncommitted key.
        with connection.cursor() as cursor:
            for _ in range(200):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock' AND wait_event = 'transactionid'")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the request never waited on the writer's key")
        writer.commit()
    finally:
        writer.close()  # a writer left uncommitted by a failure rolls back here and frees the request
        if request.ident is not None:
            request.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE race_keys, race_events")

    (response,) = answers
    if same_payload:
        assert response.status_code == 200, response.content
        assert response.json() == first.json()
    else:
        assert response.status_code == 422, response.content
        assert response.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert UsageEvent.objects.count() == 1 and UsageEventKey.objects.count() == 1
