"""The single-event path outside a test transaction, as a production request runs it:
an unlocked read, then one autocommitted insert that re-checks what the read saw."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest
from django.db import connection

from metering.services import ingest
from metering.models import Subscription, UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = {"external_subscription_id": "sub_1", "code": "cpu_seconds", "timestamp": "1800000000",
         "properties": {"cpu_seconds": 3}}
EVENT_TIME = datetime.fromtimestamp(1_800_000_000, tz=timezone.utc)


def post(api_client, **changes):
    return api_client.post("/api/v1/events", {"event": {**EVENT, "transaction_id": "tx-1", **changes}},
                           format="json")


def test_a_new_event_is_stored_once_and_resends_settle_on_the_general_path(api_client, subscription):
    first = post(api_client)
    assert first.status_code == 200, first.content
    assert not connection.in_atomic_block

    resend = post(api_client)
    assert resend.status_code == 200 and resend.json() == first.json()
    conflicting = post(api_client, properties={"cpu_seconds": 4})
    assert conflicting.status_code == 422
    assert conflicting.json()["error_details"] == {"transaction_id": ["value_already_exist"]}

    (stored,) = UsageEvent.objects.all()
    assert stored.value == 3 and stored.timestamp == EVENT_TIME


def test_a_window_closed_between_the_check_and_the_insert_refuses_the_event(api_client, subscription, monkeypatch):
    """The unlocked read saw an open window; rating closes it before the insert runs.
    The insert's re-check notices, and the general path answers period_closed."""
    real_check = ingest._check_events

    def check_then_close_the_window(*args, **kwargs):
        resolved = real_check(*args, **kwargs)
        Subscription.objects.filter(external_id="sub_1").update(
            usage_frozen_until=datetime(2030, 1, 1, tzinfo=timezone.utc))
        return resolved

    monkeypatch.setattr(ingest, "_check_events", check_then_close_the_window)
    response = post(api_client)

    assert response.status_code == 422, response.content
    assert response.json()["error_details"] == {"timestamp": ["period_closed"]}
    assert not UsageEvent.objects.exists()


def test_a_metric_changed_between_the_check_and_the_insert_is_checked_again(api_client, subscription, monkeypatch):
    from metering.models import BillableMetric

    real_check = ingest._check_events

    def check_then_change_the_metric(*args, **kwargs):
        resolved = real_check(*args, **kwargs)
        BillableMetric.objects.filter(code="cpu_seconds").update(field_name="gpu_seconds")
        return resolved

    monkeypatch.setattr(ingest, "_check_events", check_then_change_the_metric)
    response = post(api_client)

    assert response.status_code == 422, response.content
    assert "properties" in response.json()["error_details"]
    assert not UsageEvent.objects.exists()


def test_a_connection_dropped_by_the_database_is_reopened_once(api_client, subscription, settings):
    assert post(api_client, transaction_id="before").status_code == 200
    backend_pid = connection.connection.info.backend_pid
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])

    response = post(api_client, transaction_id="after")

    assert response.status_code == 200, response.content
    assert connection.connection.info.backend_pid != backend_pid
    assert sorted(UsageEvent.objects.values_list("transaction_id", flat=True)) == ["after", "before"]


def test_the_two_statements_are_prepared_on_the_connection(api_client, subscription):
    assert post(api_client).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("INSERT INTO metering_usageevent" in statement for statement in prepared), prepared
    assert any("LEFT JOIN metering_subscription" in statement for statement in prepared), prepared
