"""Per-API-key rate limits through the HTTP API (#17, Medium "Throttling"): separate ingest
and management budgets, counted in Redis, Lago's 429 body with ``Retry-After``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
from django.test import override_settings

from billing_kit.throttling import INGEST, MANAGEMENT, Rate, check_rate, parse_rate
from identity import keys
from tests.conftest import REPO_ROOT, make_api_client, subprocess_environment

pytestmark = pytest.mark.django_db

TOO_MANY = {"status": 429, "error": "Too Many Requests", "code": "too_many_requests"}


def event(n: int) -> dict:
    return {"event": {"transaction_id": f"tx_throttle_{n}", "external_subscription_id": "sub_1",
                      "code": "cpu_seconds", "properties": {"cpu_seconds": "1"}}}


@pytest.fixture
def fresh_key(service, subscription) -> str:
    """A key of the same service with nothing counted yet (the fixtures' calls used the other)."""
    return keys.issue_key(service=service, name="throttled").plaintext


@pytest.fixture
def fresh_client(fresh_key):
    return make_api_client(fresh_key)


def assert_throttled(response, *, limit: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == TOO_MANY
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response["x-ratelimit-limit"] == str(limit)
    assert response["x-ratelimit-remaining"] == "0"
    assert response["x-ratelimit-reset"] == response["Retry-After"]


@override_settings(API_THROTTLE_MANAGEMENT_RATE="3/min", API_THROTTLE_INGEST_RATE="1000/min")
def test_management_calls_beyond_the_keys_budget_are_429_with_retry_after(fresh_client, other_api_key):
    api_client = fresh_client
    remaining = [api_client.get("/api/v1/plans") for _ in range(3)]
    assert [r.status_code for r in remaining] == [200, 200, 200]
    assert [r["x-ratelimit-remaining"] for r in remaining] == ["2", "1", "0"]
    assert_throttled(api_client.get("/api/v1/customers/cus_1"), limit=3)
    assert_throttled(api_client.post("/api/v1/plans", {"plan": {}}, format="json"), limit=3)
    # nothing was done by a refused write
    assert api_client.get("/api/v1/plans").status_code == 429

    # another service's key has its own budget
    other = make_api_client(other_api_key)
    assert other.get("/api/v1/plans").status_code == 200
    # and ingestion is a separate budget of the same key
    assert api_client.post("/api/v1/events", event(1), format="json").status_code == 200


@override_settings(API_THROTTLE_INGEST_RATE="2/min", API_THROTTLE_MANAGEMENT_RATE="1000/min")
def test_ingestion_beyond_the_keys_budget_is_429_on_the_fast_path_and_through_drf(fresh_client):
    api_client = fresh_client
    assert api_client.post("/api/v1/events", event(1), format="json").status_code == 200
    batch = {"events": [event(2)["event"], event(3)["event"]]}
    assert api_client.post("/api/v1/events/batch", batch, format="json").status_code == 200
    refused = api_client.post("/api/v1/events", event(4), format="json")
    assert_throttled(refused, limit=2)
    # an Idempotency-Key sends the call through DRF instead of the fast path: same budget
    assert_throttled(api_client.post("/api/v1/events", event(5), format="json",
                                     HTTP_IDEMPOTENCY_KEY="throttled-1"), limit=2)
    # the refused events were not stored; management calls still answer
    assert api_client.get("/api/v1/events/tx_throttle_1").status_code == 200
    assert api_client.get("/api/v1/events/tx_throttle_4").status_code == 404
    assert api_client.get("/api/v1/events/tx_throttle_5").status_code == 404


@override_settings(API_THROTTLE_INGEST_RATE="off", API_THROTTLE_MANAGEMENT_RATE="off")
def test_off_means_no_limit_and_no_rate_headers(api_client, subscription):
    responses = [api_client.get("/api/v1/plans") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "x-ratelimit-limit" not in responses[-1]


@override_settings(API_THROTTLE_MANAGEMENT_RATE="2/min")
def test_counters_live_in_redis_shared_by_every_web_process(fresh_client, fresh_key):
    assert fresh_client.get("/api/v1/plans").status_code == 200
    prefix = "_".join(fresh_key.split("_", 2)[:2])
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    keys = [k.decode() for k in client.scan_iter(match=f"*throttle:{MANAGEMENT}:{prefix}:*")]
    assert len(keys) == 1
    assert int(client.get(keys[0])) == 1
    assert 0 < client.ttl(keys[0]) <= 120


def test_a_window_renews_the_budget_and_retry_after_counts_to_its_end(api_key, settings):
    settings.API_THROTTLE_INGEST_RATE = "2/min"
    ident = f"unit-{api_key[:11]}"
    start = 6_000_000.0  # a window boundary: 100000 minutes
    assert check_rate(scope=INGEST, ident=ident, now=start + 10).allowed
    second = check_rate(scope=INGEST, ident=ident, now=start + 20)
    assert second.allowed and second.remaining == 0
    third = check_rate(scope=INGEST, ident=ident, now=start + 45.5)
    assert not third.allowed and third.reset_seconds == 15
    renewed = check_rate(scope=INGEST, ident=ident, now=start + 60)
    assert renewed.allowed and renewed.remaining == 1 and renewed.reset_seconds == 60


@pytest.mark.parametrize("text, rate", [("600/min", Rate(600, 60)), ("50/s", Rate(50, 1)),
                                        ("100/10s", Rate(100, 10)), ("10000/hour", Rate(10000, 3600)),
                                        ("off", None), ("0", None)])
def test_rates_are_read_as_count_per_period(text, rate):
    assert parse_rate(text) == rate


PRINT = ("import json; from django.conf import settings; print(json.dumps({"
         "'backend': settings.CACHES['default']['BACKEND'], 'ingest': settings.API_THROTTLE_INGEST_RATE}))")


def settings_of(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", PRINT], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=subprocess_environment(**env), timeout=60)


def test_the_counters_use_redis_when_configured_and_memory_on_the_embedded_default(tmp_path):
    configured = settings_of()
    assert json.loads(configured.stdout.splitlines()[-1])["backend"].endswith("RedisCache")
    embedded = settings_of(DATABASE_URL="", REDIS_URL="", VAR_DIR=str(tmp_path))
    assert json.loads(embedded.stdout.splitlines()[-1])["backend"].endswith("LocMemCache")


def test_a_rate_that_cannot_be_read_stops_the_service_from_starting():
    result = settings_of(API_THROTTLE_INGEST_RATE="lots")
    assert result.returncode != 0
    assert "API_THROTTLE_INGEST_RATE='lots'" in result.stderr
