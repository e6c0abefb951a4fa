import json
import subprocess

import pytest
from django.db import connection
from django.utils import timezone

from identity import keys
from identity.models import ApiKey
from tests.conftest import make_api_client

UNAUTHORIZED = {"status": 401, "error": "Unauthorized"}


@pytest.mark.django_db
class TestAuthentication:
    def test_valid_key_identifies_the_calling_service(self, api_client, service):
        response = api_client.get("/api/v1/organizations")
        assert response.status_code == 200
        assert response.json()["organization"]["code"] == service.code
        # Lago's created_at: whole seconds, UTC, as on every other object.
        assert response.json()["organization"]["created_at"] == service.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    @pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Basic abc", "Token fb_x"])
    def test_missing_or_malformed_credentials_get_lagos_401_body(self, client, header):
        extra = {"HTTP_AUTHORIZATION": header} if header else {}
        response = client.get("/api/v1/organizations", **extra)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert response.json() == UNAUTHORIZED

    def test_a_wrong_secret_with_a_real_prefix_is_refused(self, api_key):
        forged = api_key[:12] + ("A" if api_key[12] != "A" else "B") + api_key[13:]
        assert make_api_client(forged).get("/api/v1/organizations").json() == UNAUTHORIZED

    def test_revoked_key_is_refused(self, api_key):
        keys.revoke_key(prefix=api_key[:11])
        response = make_api_client(api_key).get("/api/v1/organizations")
        assert response.status_code == 401 and response.json() == UNAUTHORIZED

    def test_expired_and_inactive_keys_are_refused(self, service):
        expired = keys.issue_key(service=service, expires_at=timezone.now() - timezone.timedelta(seconds=1))
        inactive = keys.issue_key(service=service)
        ApiKey.objects.filter(pk=inactive.api_key.pk).update(is_active=False)
        for issued in (expired, inactive):
            assert make_api_client(issued.plaintext).get("/api/v1/organizations").status_code == 401

    def test_inactive_service_keys_are_refused(self, api_key, service):
        service.is_active = False
        service.save()
        assert make_api_client(api_key).get("/api/v1/organizations").status_code == 401

    def test_rotation_keeps_several_keys_valid(self, api_key, service):
        second = keys.issue_key(service=service).plaintext
        assert make_api_client(api_key).get("/api/v1/organizations").status_code == 200
        assert make_api_client(second).get("/api/v1/organizations").status_code == 200

    def test_key_has_prefix_and_enough_entropy_and_only_its_hash_is_stored(self, service):
        issued = keys.issue_key(service=service)
        prefix, secret = issued.plaintext[:11], issued.plaintext[12:]
        assert prefix.startswith("fb_") and len(secret) >= 43  # 32 bytes of base64url
        row = ApiKey.objects.get(pk=issued.api_key.pk)
        assert issued.plaintext not in (row.prefix, row.key_hash, row.name)
        assert len(row.key_hash) == 64

    def test_last_used_is_recorded(self, api_key):
        make_api_client(api_key).get("/api/v1/organizations")
        assert ApiKey.objects.get(prefix=api_key[:11]).last_used_at is not None


@pytest.mark.django_db(transaction=True)
def test_database_dump_holds_no_plaintext_key(api_key):
    db = connection.settings_dict
    dump = subprocess.run(
        ["pg_dump", "-h", db["HOST"] or "127.0.0.1", "-U", db["USER"] or "postgres", "-d", db["NAME"],
         "--data-only"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert api_key[:11] in dump  # the public prefix is stored...
    assert api_key not in dump and api_key[12:] not in dump  # ...the secret never is


@pytest.mark.django_db
class TestRoutingAndErrors:
    def test_unknown_api_route_is_lagos_json_404(self, api_client):
        response = api_client.get("/api/v1/does-not-exist")
        assert response.status_code == 404
        assert response.json() == {"status": 404, "error": "Not Found", "code": "resource_not_found"}

    def test_unknown_route_without_key_is_json_too(self, client):
        response = client.post("/api/v1/nothing/here", data="{}", content_type="application/json")
        assert response.status_code in (401, 404)
        assert response["Content-Type"] == "application/json"

    def test_trailing_slash_is_not_redirected(self, api_client):
        response = api_client.get("/api/v1/organizations/")
        assert response.status_code == 404
        assert response.json()["code"] == "resource_not_found"

    def test_malformed_json_is_a_400_in_the_error_shape(self, api_client):
        response = api_client.generic("PUT", "/api/v1/organizations", "{not json", content_type="application/json")
        assert response.status_code == 400
        body = response.json()
        assert body["status"] == 400 and body["error"].startswith("BadRequest") and body["code"] == "invalid_json"

    def test_missing_root_key_is_a_400(self, api_client):
        response = api_client.put("/api/v1/organizations", {"name": "x"}, format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "BadRequest: param is missing or the value is empty: organization"

    def test_invalid_values_are_422_with_lago_error_details(self, api_client):
        response = api_client.put("/api/v1/organizations", {"organization": {"default_currency": "cad"}},
                                  format="json")
        assert response.status_code == 422
        assert response.json() == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                                   "error_details": {"default_currency": ["value_is_invalid"]}}

    def test_update_applies_only_declared_fields(self, api_client, service):
        response = api_client.put("/api/v1/organizations",
                                  {"organization": {"name": "Renamed", "code": "hijack"}}, format="json")
        assert response.status_code == 200
        service.refresh_from_db()
        assert (service.name, service.code) == ("Renamed", "nexacloud")

    def test_oversized_body_is_refused_with_413(self, api_client, settings):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
        body = json.dumps({"organization": {"name": "x" * 5000}})
        response = api_client.generic("PUT", "/api/v1/organizations", body, content_type="application/json")
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    def test_method_not_allowed_is_json(self, api_client):
        response = api_client.delete("/api/v1/organizations")
        assert response.status_code == 405
        assert response.json()["status"] == 405


@pytest.mark.django_db
class TestHealth:
    def test_lago_health(self, client):
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json()["message"] == "Success" and "version" in response.json()

    def test_lago_health_claims_no_source_url_unless_configured(self, client, settings):
        assert client.get("/health").json()["github_url"] == ""
        settings.FUSION_BILLING_SOURCE_URL = "https://git.nexasystems.example/billing/fusion-billing"
        assert client.get("/health").json()["github_url"] == settings.FUSION_BILLING_SOURCE_URL

    def test_ops_health_checks_database_and_broker(self, admin_client):
        response = admin_client.get("/ops/health")
        assert response.status_code == 200, response.json()
        checks = response.json()["checks"]
        assert checks["database"]["ok"] and checks["broker"]["ok"]
        assert "odoo" in checks

    def test_ops_health_reports_a_webhook_backlog_without_failing(self, admin_client, service):
        from datetime import timedelta

        from django.utils import timezone

        from webhooks.models import WebhookDelivery
        from webhooks.services import create_endpoint, record_event

        create_endpoint(service=service, url="http://127.0.0.1:9/in")
        record_event(service=service, webhook_type="customer.created", object_type="customer", payload={})
        WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(hours=1))
        response = admin_client.get("/ops/health")
        assert response.status_code == 200
        webhooks = response.json()["checks"]["webhooks"]
        assert webhooks["ok"] is False and webhooks["due"] == 1 and webhooks["oldest_due_seconds"] >= 3600

    def test_ops_health_is_503_when_the_broker_is_down(self, admin_client, monkeypatch):
        from billing_project.celery import app

        monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")
        monkeypatch.setitem(app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
        response = admin_client.get("/ops/health")
        assert response.status_code == 503
        assert response.json()["checks"]["broker"]["ok"] is False
