"""What the embedded default promises: WAL, IMMEDIATE transactions, a busy timeout, and a
writer that waits for another writer instead of failing."""
from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from identity.models import Service
from metering.models import UsageEvent
from tests.sqlite.test_ingest import event_body, make_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def test_sqlite_in_wal_mode_with_immediate_transactions_and_a_busy_timeout():
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == settings.SQLITE_BUSY_TIMEOUT_SECONDS * 1000
        assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert settings.SQLITE_BUSY_TIMEOUT_SECONDS == 30
    assert connection.transaction_mode == "IMMEDIATE"
    assert settings.RATING_SHARDS == 1


def test_a_writer_waits_for_the_write_lock_instead_of_failing(api_client, service):
    """Another connection holds the write lock (and commits a row) while an event is posted.

    With SQLite's default DEFERRED transactions the ingest would read first, then find a
    newer commit when it tries to write and fail at once with "database is locked".
    """
    subscription = make_subscription(service)
    # Warm up: the key is cached and its last_used_at written, so the post below starts
    # with the ingest transaction's reads.
    assert api_client.post("/api/v1/events", event_body(subscription, "warm-up"), format="json").status_code == 200
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_the_write_lock() -> None:
        try:
            with transaction.atomic():
                Service.objects.filter(pk=service.pk).update(name="Held")
                holding.set()
                release.wait(timeout=30)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert holding.wait(timeout=30)
    result: dict = {}

    def post() -> None:
        result["response"] = api_client.post("/api/v1/events", event_body(subscription, "waits"), format="json")
        connection.close()

    poster = threading.Thread(target=post)
    poster.start()
    poster.join(timeout=0.5)  # it is now waiting for the lock (or, if broken, has failed)
    release.set()
    holder.join(timeout=30)
    poster.join(timeout=60)
    assert errors == []
    assert result["response"].status_code == 200, result["response"].content
    assert UsageEvent.objects.filter(transaction_id="waits").count() == 1
    assert Service.objects.get(pk=service.pk).name == "Held"


def test_health_pages_on_the_embedded_default(client, admin_client):
    assert client.get("/health").json()["message"] == "Success"
    response = admin_client.get("/ops/health")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
