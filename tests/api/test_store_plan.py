"""An ingest request reads only its own keys, whatever PostgreSQL's statistics say.

The store statement looks each event's key up in the key table. Planned as a join, a
service that is new or has grown since the last ANALYZE (statistics saying it has almost
no keys) got a hash join reading ALL of the service's keys on every request: a fresh
deployment ingested at a third of the speed of an 80M-event table (docs/scaling.md). The
plans are read from PostgreSQL's own auto_explain, as they ran, through the HTTP API."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = "metering_usageeventkey"
BATCH = 100


def batch(first: int, count: int = BATCH) -> dict:
    return {"events": [{"transaction_id": f"tx-{n}", "external_subscription_id": "sub_1", "code": "cpu_seconds",
                        "timestamp": "1800000000", "properties": {"cpu_seconds": n % 7}}
                       for n in range(first, first + count)]}


@contextmanager
def executed_plans() -> Iterator[list[dict]]:
    """The plans of the statements run on Django's connection meanwhile, with actual rows."""
    plans: list[dict] = []

    def collect(diagnostic) -> None:
        message = diagnostic.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message.split("plan:", 1)[1])["Plan"])

    with connection.cursor() as cursor:
        for statement in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                          "SET auto_explain.log_analyze = on", "SET auto_explain.log_format = 'json'",
                          "SET client_min_messages = log"):
            cursor.execute(statement)
    connection.connection.add_notice_handler(collect)
    try:
        yield plans
    finally:
        connection.connection.remove_notice_handler(collect)
        with connection.cursor() as cursor:
            cursor.execute("RESET client_min_messages")
            cursor.execute("SET auto_explain.log_min_duration = -1")


def key_rows_read(node: dict) -> int:
    """Rows that scans of the key table handed on (a ModifyTable's insert is not a read)."""
    read = 0
    if node.get("Relation Name") == KEYS and "Scan" in node["Node Type"]:
        read += node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    return read + sum(key_rows_read(child) for child in node.get("Plans", []))


def test_a_request_reads_only_its_own_keys_while_the_statistics_say_the_service_has_none(api_client, subscription):
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {KEYS}")  # the statistics of a deployment before its first events
    for first in range(0, 3_000, BATCH):
        assert api_client.post("/api/v1/events/batch", batch(first), format="json").status_code == 200

    with executed_plans() as plans:
        new = api_client.post("/api/v1/events/batch", batch(10_000), format="json")
        resend = api_client.post("/api/v1/events/batch", batch(0), format="json")
        single = api_client.post("/api/v1/events", {"event": batch(5, 1)["events"][0]}, format="json")
    assert (new.status_code, resend.status_code, single.status_code) == (200, 200, 200)

    assert any(KEYS in json.dumps(plan) for plan in plans), "the store statements were seen"
    reads = [key_rows_read(plan) for plan in plans]
    # A request names at most BATCH keys; the service holds 3,100 of them by now.
    assert max(reads) <= BATCH, reads
    # The resend found every one of its keys.
    assert BATCH in reads, reads
