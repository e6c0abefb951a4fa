"""X-Lago-Signature exactly as Lago signs: a receiver written for Lago verifies ours unchanged.

The receivers below are Lago's documented ones (PyJWT with the public key the official
client fetches; base64 HMAC-SHA256 keyed by the organization's HMAC key), run against what
the delivery engine really sent to a local receiver.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import httpx
import jwt
import pytest
from lago_python_client.client import Client
from lago_python_client.models import WebhookEndpoint as LagoWebhookEndpoint

from webhooks import delivery, keys, signing
from webhooks.models import OrganizationHmacKey, WebhookRsaKey

from .conftest import INVOICE

LAGO_CLOUD_ISSUER = "https://api.getlago.com"


def lago_jwt_receiver(public_key: bytes, body: bytes, signature: str) -> bool:
    """Lago's docs: decode with the public key, RS256, issuer; compare ``data`` with the body."""
    try:
        decoded = jwt.decode(signature, public_key, algorithms=["RS256"], issuer=LAGO_CLOUD_ISSUER)
    except jwt.PyJWTError:
        return False
    return decoded["data"] == body.decode()


def lago_hmac_receiver(hmac_key: str, body: bytes, signature: str) -> bool:
    calculated = base64.b64encode(hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(calculated, signature)


def deliver_one(receiver, emit, service):
    event = emit(service)
    delivery.deliver(event_ids=[event.id])
    [request] = receiver.received("/hook")[-1:]
    assert request.body == bytes(event.body)
    return event, request


@pytest.mark.django_db(transaction=True)
def test_jwt_endpoint_verified_with_the_public_key_from_the_official_client(live_server, api_key, service,
                                                                             receiver, emit):
    lago = Client(api_key=api_key, api_url=live_server.url)
    created = lago.webhook_endpoints.create(LagoWebhookEndpoint(webhook_url=receiver.url()))
    assert created.signature_algo == "jwt"  # Lago's default
    public_key = lago.webhooks.public_key()  # the client base64-decodes json_public_key
    assert public_key.startswith(b"-----BEGIN PUBLIC KEY-----")

    event, request = deliver_one(receiver, emit, service)
    assert request.header("x-lago-signature-algorithm") == "jwt"
    assert request.header("x-lago-unique-key") == str(event.id)
    assert lago_jwt_receiver(public_key, request.body, request.header("x-lago-signature"))
    # a changed body, or another key, does not verify
    assert not lago_jwt_receiver(public_key, request.body + b" ", request.header("x-lago-signature"))
    other_public = signing.public_key_pem(signing.generate_rsa_private_key_pem()).encode()
    assert not lago_jwt_receiver(other_public, request.body, request.header("x-lago-signature"))
    # the deprecated plain-text route serves the same key
    text = httpx.get(lago.webhooks.base_url + "webhooks/public_key",
                     headers={"Authorization": f"Bearer {api_key}"}).text
    assert base64.b64decode(text) == public_key
    # The key is made once and stored: every later signature uses it.
    assert WebhookRsaKey.objects.count() == 1
    _, again = deliver_one(receiver, emit, service)
    assert lago_jwt_receiver(lago.webhooks.public_key(), again.body, again.header("x-lago-signature"))


@pytest.mark.django_db
def test_hmac_endpoint_is_signed_with_the_organization_key(service, other_service, receiver, make_endpoint, emit):
    issued = make_endpoint(service, receiver.url(), signature_algo="hmac")
    _, request = deliver_one(receiver, emit, service)
    assert request.header("x-lago-signature-algorithm") == "hmac"
    org_key = OrganizationHmacKey.objects.get(service=service).hmac_key
    assert lago_hmac_receiver(org_key, request.body, request.header("x-lago-signature"))
    assert not lago_hmac_receiver(issued.secret, request.body, request.header("x-lago-signature"))
    # one key per organization (service), the same on every delivery
    assert keys.hmac_key_for(service_id=other_service.pk) != org_key
    _, second = deliver_one(receiver, emit, service)
    assert lago_hmac_receiver(org_key, second.body, second.header("x-lago-signature"))


@pytest.mark.django_db
def test_endpoint_switches_algorithm_through_the_api(api_client, service, receiver, emit):
    created = api_client.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {
        "webhook_url": receiver.url(), "signature_algo": "hmac"}}, format="json")
    assert created.status_code == 200, created.content
    lago_id = created.json()["webhook_endpoint"]["lago_id"]
    updated = api_client.put(f"/api/v1/webhook_endpoints/{lago_id}", {"webhook_endpoint": {
        "signature_algo": "jwt"}}, format="json")
    assert updated.json()["webhook_endpoint"]["signature_algo"] == "jwt"
    _, request = deliver_one(receiver, emit, service)
    public_key = base64.b64decode(api_client.get("/api/v1/webhooks/json_public_key").json()["webhook"]["public_key"])
    assert lago_jwt_receiver(public_key, request.body, request.header("x-lago-signature"))


@pytest.mark.django_db
def test_configured_rsa_key_is_used(settings, api_client, service, receiver, make_endpoint, emit):
    private_pem = signing.generate_rsa_private_key_pem()
    settings.LAGO_RSA_PRIVATE_KEY = base64.b64encode(private_pem.encode()).decode()
    make_endpoint(service, receiver.url())
    _, request = deliver_one(receiver, emit, service)
    served = base64.b64decode(api_client.get("/api/v1/webhooks/json_public_key").json()["webhook"]["public_key"])
    assert served.decode() == signing.public_key_pem(private_pem)
    assert lago_jwt_receiver(served, request.body, request.header("x-lago-signature"))
    assert not WebhookRsaKey.objects.exists()  # nothing generated when the key is configured


@pytest.mark.django_db
def test_organization_id_is_the_organizations_uuid(api_client, service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    _, request = deliver_one(receiver, emit, service)
    envelope = json.loads(request.body)
    organization = api_client.get("/api/v1/organizations").json()["organization"]
    assert str(uuid.UUID(envelope["organization_id"])) == envelope["organization_id"] == organization["lago_id"]
    assert envelope["invoice"] == INVOICE


@pytest.mark.django_db
def test_public_key_needs_an_api_key(client):
    response = client.get("/api/v1/webhooks/json_public_key")
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"


@pytest.mark.django_db
def test_staff_makes_and_reads_the_organization_hmac_key_in_the_admin(admin_client, service):
    from django.urls import reverse

    added = admin_client.post(reverse("admin:webhooks_organizationhmackey_add"), {"service": service.pk})
    assert added.status_code == 302
    row = OrganizationHmacKey.objects.get(service=service)
    page = admin_client.get(reverse("admin:webhooks_organizationhmackey_change", args=[row.pk]))
    assert row.hmac_key in page.content.decode()
    assert keys.hmac_key_for(service_id=service.pk) == row.hmac_key  # the key deliveries use
