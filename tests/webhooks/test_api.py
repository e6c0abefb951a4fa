"""``/api/v1/webhook_endpoints`` in Lago's shape."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from lago_python_client.client import Client
from lago_python_client.models.webhook_endpoint import WebhookEndpoint as LagoWebhookEndpoint
from standardwebhooks.webhooks import Webhook

from webhooks import signing
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook_endpoints"
LOCAL_HOOK = "http://127.0.0.1:9/hook"  # allowed by WEBHOOK_ALLOW_HTTP_HOSTS in tests


def create(client, **fields):
    body = {"webhook_endpoint": {"webhook_url": LOCAL_HOOK, **fields}}
    return client.post(URL, body, format="json")


def test_create_returns_the_secret_once(api_client, service):
    response = create(api_client, name="billing", event_types=["invoice.created", "invoice.voided"],
                      signature_algo="hmac")
    assert response.status_code == 200, response.json()
    data = response.json()["webhook_endpoint"]
    assert data["webhook_url"] == LOCAL_HOOK and data["name"] == "billing"
    assert data["event_types"] == ["invoice.created", "invoice.voided"]
    assert data["signature_algo"] == "hmac" and data["lago_organization_id"] == str(service.lago_id)
    assert data["created_at"].endswith("Z") and data["active"] is True
    secret = data["secret"]
    signing.secret_key_bytes(secret)  # a valid whsec_ secret with >= 24 bytes
    assert WebhookEndpoint.objects.get(pk=data["lago_id"]).secret == secret
    shown = api_client.get(f"{URL}/{data['lago_id']}").json()["webhook_endpoint"]
    assert "secret" not in shown
    listed = api_client.get(URL).json()
    assert "secret" not in listed["webhook_endpoints"][0]
    assert listed["meta"]["total_count"] == 1


def test_list_is_paginated_and_scoped(api_client, other_api_client):
    for _ in range(3):
        create(api_client)
    create(other_api_client)
    body = api_client.get(URL, {"per_page": 2}).json()
    assert len(body["webhook_endpoints"]) == 2
    assert body["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None, "total_pages": 2,
                            "total_count": 3}


def test_other_service_cannot_see_or_touch(api_client, other_api_client):
    lago_id = create(api_client).json()["webhook_endpoint"]["lago_id"]
    for response in (
        other_api_client.get(f"{URL}/{lago_id}"),
        other_api_client.put(f"{URL}/{lago_id}", {"webhook_endpoint": {"name": "x"}}, format="json"),
        other_api_client.delete(f"{URL}/{lago_id}"),
        other_api_client.post(f"{URL}/{lago_id}/rotate_secret"),
    ):
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found", "code": "webhook_endpoint_not_found"}
    assert WebhookEndpoint.objects.get(pk=lago_id).deleted_at is None


def test_update_and_delete(api_client):
    lago_id = create(api_client).json()["webhook_endpoint"]["lago_id"]
    response = api_client.put(f"{URL}/{lago_id}", {"webhook_endpoint": {
        "webhook_url": "http://localhost:8080/new", "event_types": None, "name": "renamed"}}, format="json")
    assert response.status_code == 200
    data = response.json()["webhook_endpoint"]
    assert data["webhook_url"] == "http://localhost:8080/new" and data["event_types"] is None
    assert data["name"] == "renamed" and "secret" not in data
    deleted = api_client.delete(f"{URL}/{lago_id}")
    assert deleted.status_code == 200 and deleted.json()["webhook_endpoint"]["lago_id"] == lago_id
    assert api_client.get(f"{URL}/{lago_id}").status_code == 404
    assert api_client.get(URL).json()["meta"]["total_count"] == 0


def test_update_to_an_unsafe_url_is_refused_and_changes_nothing(api_client):
    lago_id = create(api_client, name="kept").json()["webhook_endpoint"]["lago_id"]
    response = api_client.put(f"{URL}/{lago_id}", {"webhook_endpoint": {
        "webhook_url": "https://169.254.169.254/latest/meta-data/", "name": "renamed"}}, format="json")
    assert response.status_code == 422
    assert response.json()["error_details"] == {"webhook_url": ["url_is_invalid"]}
    endpoint = WebhookEndpoint.objects.get(pk=lago_id)
    assert endpoint.url == LOCAL_HOOK and endpoint.name == "kept"


def test_rotate_secret_returns_new_secret_and_keeps_old_for_overlap(api_client):
    created = create(api_client).json()["webhook_endpoint"]
    rotated = api_client.post(f"{URL}/{created['lago_id']}/rotate_secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["webhook_endpoint"]["secret"]
    assert new_secret != created["secret"]
    endpoint = WebhookEndpoint.objects.get(pk=created["lago_id"])
    assert endpoint.secret == new_secret and endpoint.previous_secret == created["secret"]
    hours = (endpoint.previous_secret_expires_at - endpoint.updated_at).total_seconds() / 3600
    assert 23.9 < hours <= 24.1


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http to a host not allowed
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://100.64.0.1/x",
        "ftp://example.com/",
        "not a url",
        "https://user:pw@example.com/",
    ],
)
def test_unsafe_urls_are_refused(api_client, url):
    response = create(api_client, webhook_url=url)
    assert response.status_code == 422
    assert response.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                               "error_details": {"webhook_url": ["url_is_invalid"]}}
    assert not WebhookEndpoint.objects.exists()


def test_hostname_resolving_to_private_address_is_refused(api_client, settings, monkeypatch):
    settings.WEBHOOK_RESOLVER = "webhooks.testing.dns.resolve_from_env"
    monkeypatch.setenv("WEBHOOK_FAKE_DNS", "internal.example.com=10.1.2.3,ok.example.com=93.184.215.14")
    assert create(api_client, webhook_url="https://internal.example.com/h").status_code == 422
    assert create(api_client, webhook_url="https://ok.example.com/h").status_code == 200


@pytest.mark.parametrize(
    "fields, details",
    [
        ({"signature_algo": "rsa"}, {"signature_algo": ["value_is_invalid"]}),
        ({"event_types": ["invoice.exploded"]}, {"event_types": ["value_is_invalid"]}),
        ({"event_types": "invoice.created"}, {"event_types": ["not_a_list"]}),
        ({"webhook_url": None}, {"webhook_url": ["value_is_mandatory"]}),
    ],
)
def test_validation_errors(api_client, fields, details):
    response = create(api_client, **fields)
    assert response.status_code == 422
    assert response.json()["error_details"] == details


def test_missing_root_is_400(api_client):
    response = api_client.post(URL, {"webhook_url": LOCAL_HOOK}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "BadRequest: param is missing or the value is empty: webhook_endpoint"


def test_at_most_ten_endpoints_per_service(api_client):
    for _ in range(10):
        assert create(api_client).status_code == 200
    response = create(api_client)
    assert response.status_code == 422
    assert response.json()["error_details"] == {"webhook_endpoint": ["limit_reached"]}


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_cannot_both_pass_the_limit(api_client, service, settings):
    from webhooks import services

    settings.WEBHOOK_ENDPOINTS_PER_SERVICE = 1
    responses = []

    def create_in_another_connection():
        try:
            responses.append(create(api_client))
        finally:
            connection.close()

    with transaction.atomic():
        services.create_endpoint(service=service, url=LOCAL_HOOK)  # holds the service lock until commit
        other = threading.Thread(target=create_in_another_connection)
        other.start()
        time.sleep(0.5)  # the request is now waiting for the lock (or, without it, past the limit check)
    other.join()
    [response] = responses
    assert response.status_code == 422
    assert response.json()["error_details"] == {"webhook_endpoint": ["limit_reached"]}
    assert WebhookEndpoint.objects.filter(service=service).count() == 1


def test_unauthenticated_is_401(client):
    assert client.get(URL).status_code == 401


def test_lago_python_client_works_unchanged(live_server, api_key):
    lago = Client(api_key=api_key, api_url=live_server.url)
    created = lago.webhook_endpoints.create(LagoWebhookEndpoint(
        webhook_url=LOCAL_HOOK, signature_algo="hmac", event_types=["invoice.created"]))
    assert created.webhook_url == LOCAL_HOOK and created.lago_id
    found = lago.webhook_endpoints.find(created.lago_id)
    assert found.event_types == ["invoice.created"]
    updated = lago.webhook_endpoints.update(LagoWebhookEndpoint(webhook_url="http://localhost:1/x"), created.lago_id)
    assert updated.webhook_url == "http://localhost:1/x"
    listed = lago.webhook_endpoints.find_all()
    assert [e.lago_id for e in listed["webhook_endpoints"]] == [created.lago_id]
    lago.webhook_endpoints.destroy(created.lago_id)
    assert lago.webhook_endpoints.find_all()["webhook_endpoints"] == []


def test_created_secret_verifies_deliveries(api_client, receiver, service):
    from django.core.management import call_command
    from io import StringIO

    from webhooks import services

    secret = create(api_client, webhook_url=receiver.url()).json()["webhook_endpoint"]["secret"]
    services.record_event(service=service, webhook_type="customer.created", object_type="customer",
                          payload={"external_id": "c1"})
    call_command("deliver_webhooks", stdout=StringIO())
    [request] = receiver.received()
    assert Webhook(secret).verify(request.body, request.headers)["customer"] == {"external_id": "c1"}


def test_urls_are_stored_normalised_and_ports_need_the_allow_list(api_client, settings, monkeypatch):
    settings.WEBHOOK_RESOLVER = "webhooks.testing.dns.resolve_from_env"
    monkeypatch.setenv("WEBHOOK_FAKE_DNS", "xn--bcher-kva.example=93.184.215.14,ok.example.com=93.184.215.14")
    response = create(api_client, webhook_url="https://Bücher.example/ünï?q=ø#frag")
    assert response.status_code == 200, response.content
    assert response.json()["webhook_endpoint"]["webhook_url"] == "https://xn--bcher-kva.example/%C3%BCn%C3%AF?q=%C3%B8"
    refused = create(api_client, webhook_url="https://ok.example.com:8443/h")
    assert refused.status_code == 422
    assert refused.json()["error_details"] == {"webhook_url": ["url_is_invalid"]}
    settings.WEBHOOK_ALLOWED_PORTS = ["ok.example.com:8443"]
    assert create(api_client, webhook_url="https://ok.example.com:8443/h").status_code == 200
