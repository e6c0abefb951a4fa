"""API requests run their statements under API_STATEMENT_TIMEOUT_MS: a statement past it
is cancelled and answered with a Lago-shaped 503, never a 500 or a traceback; the worker's
connection stays usable, and Celery/commands (outside requests) are not limited."""
from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from metering.models import UsageEvent
from tests.api.conftest import create_catalogue, create_subscription
from tests.conftest import make_api_client

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    settings = connection.settings_dict
    return f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


def session_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_a_statement_past_the_timeout_is_a_503_statement_timeout(api_key):
    client = make_api_client(api_key)
    create_catalogue(client)
    create_subscription(client)
    now = str(int(time.time()))
    body = {"event": {"transaction_id": "tx-1", "external_subscription_id": "sub_1", "code": "cpu_seconds",
                      "timestamp": now, "properties": {"cpu_seconds": 3}}}
    assert client.post("/api/v1/events", body, format="json").status_code == 200
    with override_settings(API_STATEMENT_TIMEOUT_MS=300), psycopg.connect(database_url()) as blocker:
        # Another session holds the key table: every statement reading it waits, past the limit.
        blocker.execute("LOCK TABLE metering_usageeventkey IN ACCESS EXCLUSIVE MODE")
        for response in (client.get("/api/v1/events/tx-1"),  # DRF view
                         client.post("/api/v1/events", body, format="json"),  # ingest fast path
                         client.post("/api/v1/events/batch", {"events": [body["event"]]}, format="json")):
            assert response.status_code == 503, response.content
            assert response.json() == {"status": 503, "error": "Service Unavailable", "code": "statement_timeout"}
        assert session_timeout() == "300ms"
        blocker.rollback()
        # The same worker connection serves the next request normally.
        assert client.get("/api/v1/events/tx-1").status_code == 200
    # The limit follows the setting on a connection that had another one.
    assert client.get("/api/v1/events/tx-1").status_code == 200
    assert session_timeout() == "5s"
    # A non-API request restores the server's default on the connection.
    client.get("/health")
    assert session_timeout() == "0"
    assert UsageEvent.objects.count() == 1
