"""The Idempotency-Key header on every API write (per service, replayed, 422 on reuse, 409 in flight)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from identity.models import AccountLink, IdempotencyKey
from identity.services import purge_idempotency_keys

pytestmark = pytest.mark.django_db


def upsert(client, key, name="Acme", external_id="cus_1"):
    return client.post("/api/v1/customers", {"customer": {"external_id": external_id, "name": name}},
                       format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_first_response_is_replayed_without_running_again(api_client):
    first = upsert(api_client, "k1")
    AccountLink.objects.update(external_email="changed-since@example.com")
    replay = upsert(api_client, "k1")
    assert replay.status_code == 200 and replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert AccountLink.objects.get().external_email == "changed-since@example.com"


def test_same_key_different_body_is_422(api_client):
    upsert(api_client, "k1")
    response = upsert(api_client, "k1", name="Other")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"idempotency_key": ["payload_mismatch"]}


def test_same_key_other_endpoint_is_422(api_client):
    upsert(api_client, "k1")
    response = api_client.delete("/api/v1/customers/cus_1", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 422
    assert AccountLink.objects.get().deleted_at is None


def test_json_key_order_does_not_matter(api_client):
    upsert(api_client, "k1")
    reordered = api_client.post("/api/v1/customers", b'{"customer":{"name":"Acme","external_id":"cus_1"}}',
                                content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert reordered.status_code == 200 and reordered["Idempotent-Replayed"] == "true"


def test_request_in_flight_is_409(api_client, service):
    now = timezone.now()
    first = upsert(api_client, "k1")
    assert first.status_code == 200
    IdempotencyKey.objects.update(state=IdempotencyKey.State.IN_FLIGHT, locked_at=now)
    response = upsert(api_client, "k1")
    assert response.status_code == 409 and response.json()["code"] == "idempotency_key_in_flight"


def test_abandoned_in_flight_key_is_taken_over(api_client):
    upsert(api_client, "k1")
    IdempotencyKey.objects.update(state=IdempotencyKey.State.IN_FLIGHT,
                                  locked_at=timezone.now() - timedelta(minutes=5))
    response = upsert(api_client, "k1")
    assert response.status_code == 200 and not response.has_header("Idempotent-Replayed")
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.COMPLETED


def test_keys_are_scoped_per_service(api_client, other_api_client):
    ours = upsert(api_client, "shared-key")
    theirs = upsert(other_api_client, "shared-key", name="Other app")
    assert theirs.status_code == 200 and not theirs.has_header("Idempotent-Replayed")
    assert ours.json()["customer"]["lago_id"] != theirs.json()["customer"]["lago_id"]
    assert IdempotencyKey.objects.count() == 2


def test_failed_requests_are_not_stored(api_client):
    bad = api_client.post("/api/v1/customers", {"customer": {"name": "no id"}}, format="json",
                          HTTP_IDEMPOTENCY_KEY="k1")
    assert bad.status_code == 422
    assert not IdempotencyKey.objects.exists()
    assert upsert(api_client, "k1").status_code == 200


def test_invalid_key_is_400(api_client):
    assert upsert(api_client, "x" * 256).status_code == 400


def test_requests_without_key_or_reads_are_untouched(api_client):
    api_client.post("/api/v1/customers", {"customer": {"external_id": "c"}}, format="json")
    api_client.get("/api/v1/customers", HTTP_IDEMPOTENCY_KEY="k1")
    assert not IdempotencyKey.objects.exists()


def test_keys_are_kept_for_the_ttl_then_purged(api_client, settings):
    upsert(api_client, "old")
    upsert(api_client, "new", external_id="cus_2")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    IdempotencyKey.objects.filter(key="new").update(created_at=timezone.now() - timedelta(hours=23))
    assert purge_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_expired_key_runs_the_request_again(api_client):
    upsert(api_client, "k1")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    response = upsert(api_client, "k1", name="Renamed")
    assert response.status_code == 200 and not response.has_header("Idempotent-Replayed")
    assert response.json()["customer"]["name"] == "Renamed"


def test_event_writes_are_covered(api_client, subscription):
    body = {"event": {"transaction_id": "t", "external_subscription_id": "sub_1", "code": "cpu_seconds",
                      "timestamp": None, "properties": {"cpu_seconds": 1}}}
    first = api_client.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="e1")
    second = api_client.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="e1")
    assert second["Idempotent-Replayed"] == "true" and second.content == first.content


def test_views_of_other_apps_are_covered_too(api_client, service):
    first = api_client.put("/api/v1/organizations", {"organization": {"name": "Renamed"}}, format="json",
                           HTTP_IDEMPOTENCY_KEY="org-1")
    assert first.status_code == 200
    service.refresh_from_db()
    service.name = "Changed meanwhile"
    service.save()
    replay = api_client.put("/api/v1/organizations", {"organization": {"name": "Renamed"}}, format="json",
                            HTTP_IDEMPOTENCY_KEY="org-1")
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    service.refresh_from_db()
    assert service.name == "Changed meanwhile"


def test_the_api_key_is_looked_up_once_per_request(api_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert upsert(api_client, "k1").status_code == 200
    key_lookups = [q["sql"] for q in queries.captured_queries if 'FROM "identity_apikey"' in q["sql"]]
    assert len(key_lookups) == 1, key_lookups


def test_a_server_error_rolls_back_the_writes_and_releases_the_key(api_client, monkeypatch):
    from identity.api import views

    def fail_after_the_upsert(link):
        raise RuntimeError("render failed")

    monkeypatch.setattr(views, "render_customer", fail_after_the_upsert)
    assert upsert(api_client, "k1").status_code == 500
    assert not AccountLink.objects.exists() and not IdempotencyKey.objects.exists()
    monkeypatch.undo()
    retried = upsert(api_client, "k1")
    assert retried.status_code == 200 and not retried.has_header("Idempotent-Replayed")
    assert AccountLink.objects.count() == 1


def test_an_abandoned_key_is_not_taken_over_by_another_body(api_client):
    upsert(api_client, "k1")
    IdempotencyKey.objects.update(state=IdempotencyKey.State.IN_FLIGHT,
                                  locked_at=timezone.now() - timedelta(minutes=5))
    response = upsert(api_client, "k1", name="Other")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"idempotency_key": ["payload_mismatch"]}


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_request_with_the_same_key_is_409_and_runs_once(live_server, api_key, monkeypatch):
    import threading

    import httpx

    from identity import services

    entered, release = threading.Event(), threading.Event()
    real_upsert = services.upsert_customer

    def slow_upsert(**kwargs):
        entered.set()
        release.wait(timeout=10)
        return real_upsert(**kwargs)

    monkeypatch.setattr(services, "upsert_customer", slow_upsert)
    body = {"customer": {"external_id": "cus_1", "name": "Acme"}}
    with httpx.Client(base_url=live_server.url, timeout=20,
                      headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": "k1"}) as http:
        first: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: first.append(http.post("/api/v1/customers", json=body)))
        thread.start()
        assert entered.wait(timeout=10)
        second = http.post("/api/v1/customers", json=body)
        release.set()
        thread.join()
        third = http.post("/api/v1/customers", json=body)
    assert second.status_code == 409 and second.json()["code"] == "idempotency_key_in_flight"
    assert first[0].status_code == 200
    assert third.status_code == 200 and third.headers["Idempotent-Replayed"] == "true"
    assert third.content == first[0].content
    assert AccountLink.objects.count() == 1


WEBHOOK_URL = "http://127.0.0.1:9/hooks"


def test_a_webhook_secret_is_never_kept_in_the_idempotency_store(api_client):
    create = {"webhook_endpoint": {"webhook_url": WEBHOOK_URL}}
    first = api_client.post("/api/v1/webhook_endpoints", create, format="json", HTTP_IDEMPOTENCY_KEY="wh-1")
    assert first.status_code == 200, first.content
    endpoint = first.json()["webhook_endpoint"]
    secret = endpoint["secret"]
    assert secret

    rotated = api_client.post(f"/api/v1/webhook_endpoints/{endpoint['lago_id']}/rotate_secret",
                              format="json", HTTP_IDEMPOTENCY_KEY="wh-2")
    assert rotated.status_code == 200, rotated.content
    new_secret = rotated.json()["webhook_endpoint"]["secret"]
    assert new_secret and new_secret != secret

    stored = [bytes(body) for body in IdempotencyKey.objects.values_list("response_body", flat=True)]
    assert len(stored) == 2
    for body in stored:
        assert secret.encode() not in body and new_secret.encode() not in body and b'"secret"' not in body

    # a replay tells what was done (the same endpoint), without the secret shown once
    for key, path, body in [("wh-1", "/api/v1/webhook_endpoints", create),
                            ("wh-2", f"/api/v1/webhook_endpoints/{endpoint['lago_id']}/rotate_secret", None)]:
        replay = api_client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
        replayed = replay.json()["webhook_endpoint"]
        assert "secret" not in replayed
        assert replayed == {k: v for k, v in endpoint.items() if k != "secret"}
    # and it ran once: one endpoint, and the secret rotated once
    assert api_client.get("/api/v1/webhook_endpoints").json()["meta"]["total_count"] == 1


def test_responses_without_a_credential_are_stored_verbatim(api_client):
    first = upsert(api_client, "plain-1")
    assert bytes(IdempotencyKey.objects.get(key="plain-1").response_body) == first.content
