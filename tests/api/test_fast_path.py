"""The ingestion fast path and the DRF views answer byte for byte the same."""
from __future__ import annotations

import uuid

import pytest

from metering.models import UsageEvent

pytestmark = pytest.mark.django_db

EVENT = {"external_subscription_id": "sub_1", "code": "cpu_seconds", "timestamp": "1800000000",
         "properties": {"cpu_seconds": 3}}
CASES = [
    ("/api/v1/events", lambda tx: {"event": {**EVENT, "transaction_id": tx}}),
    ("/api/v1/events", lambda tx: {"event": {**EVENT, "transaction_id": tx, "code": "nope"}}),
    ("/api/v1/events", lambda tx: {"evnt": {}}),
    ("/api/v1/events/batch", lambda tx: {"events": [{**EVENT, "transaction_id": f"{tx}-{i}"} for i in range(3)]}),
    ("/api/v1/events/batch", lambda tx: {"events": [{**EVENT, "transaction_id": tx, "timestamp": "soon"}, {}]}),
    ("/api/v1/events/batch", lambda tx: {"events": []}),
]


@pytest.mark.parametrize("path, body", CASES)
def test_fast_path_and_view_agree(api_client, subscription, path, body):
    # Same transaction ids on both paths: the second request is an identical resend, so
    # the two answers must be identical bytes (success) or the same error.
    tx = uuid.uuid4().hex
    fast = api_client.post(path, body(tx), format="json")
    # An Idempotency-Key routes the request through DRF (the fast path steps aside).
    view = api_client.post(path, body(tx), format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert fast.status_code == view.status_code
    assert fast.json() == view.json()
    assert fast["Content-Type"] == view["Content-Type"] == "application/json"
    # Set by the fast path itself (CommonMiddleware is skipped): no chunked fallback.
    assert fast["Content-Length"] == str(len(fast.content))


def test_fast_path_requires_a_valid_key(client, subscription):
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer fb_nothing"}):
        response = client.post("/api/v1/events", {"event": {**EVENT, "transaction_id": "t"}},
                               content_type="application/json", **header)
        assert response.status_code == 401 and response.json() == {"status": 401, "error": "Unauthorized"}
    assert not UsageEvent.objects.exists()


def test_other_methods_still_reach_the_views(api_client):
    response = api_client.get("/api/v1/events")  # Lago's list of events
    assert response.status_code == 200 and response.json()["events"] == []
    response = api_client.put("/api/v1/events")
    assert response.status_code == 405 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "event_not_supported"


def test_an_unexpected_error_is_a_json_500_not_a_page(api_client, subscription, monkeypatch):
    from metering import services

    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "ingest_events_leniently", explode)
    response = api_client.post("/api/v1/events", {"event": {**EVENT, "transaction_id": "t"}}, format="json")
    assert response.status_code == 500
    assert response.json() == {"status": 500, "error": "Internal Server Error", "code": "internal_error"}
