"""The embedded SQLite default keeps a plain usage-event table: the key table holds the
uniqueness rule there too, GET by transaction_id goes through it, and the partition
upkeep (beat tasks, command) has nothing to do."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from metering import tasks
from metering.models import UsageEvent, UsageEventKey
from metering.services import partitions
from tests.sqlite.test_ingest import event_body, make_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def test_plain_table_with_keys_and_no_partition_upkeep(api_client, service, tmp_path):
    assert connection.vendor == "sqlite"
    subscription = make_subscription(service)
    first = api_client.post("/api/v1/events", event_body(subscription, "tx-1"), format="json")
    assert first.status_code == 200
    assert api_client.post("/api/v1/events", event_body(subscription, "tx-1"), format="json").json() == first.json()
    conflict = api_client.post("/api/v1/events", event_body(subscription, "tx-1", cpu_seconds=7), format="json")
    assert conflict.status_code == 422
    (event,) = UsageEvent.objects.all()
    (key,) = UsageEventKey.objects.all()
    assert (key.event_id, key.transaction_id, key.timestamp) == (event.pk, "tx-1", event.timestamp)
    found = api_client.get("/api/v1/events/tx-1")
    assert found.status_code == 200 and found.json()["event"]["lago_id"] == first.json()["event"]["lago_id"]

    assert not partitions.is_partitioned()
    assert tasks.ensure_event_partitions() == []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.conf.settings.EVENTS_RETENTION_MONTHS", 1)
        assert tasks.archive_event_partitions() == []
    out = io.StringIO()
    call_command("event_partitions", "--ensure", "--archive", stdout=out)
    assert "not partitioned" in out.getvalue()
    assert UsageEvent.objects.count() == 1
