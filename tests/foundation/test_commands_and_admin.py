import json
import os
import subprocess
import sys
import time
import uuid
from io import StringIO

import pytest
import redis
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from identity.models import ApiKey, Service
from metering.models import Subscription
from tests.conftest import REPO_ROOT, make_api_client


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
class TestCommands:
    def test_create_service_json_prints_a_working_key(self):
        result = json.loads(run("create_service", "demo", "--name", "Demo", "--json"))
        assert result["service"] == "demo"
        response = make_api_client(result["api_key"]).get("/api/v1/organizations")
        assert response.status_code == 200 and response.json()["organization"]["code"] == "demo"

    def test_create_service_refuses_a_duplicate(self):
        run("create_service", "demo", "--name", "Demo")
        with pytest.raises(CommandError, match="already exists"):
            run("create_service", "demo", "--name", "Demo")

    def test_rotate_then_revoke(self):
        first = json.loads(run("create_service", "demo", "--name", "Demo", "--json"))["api_key"]
        second = json.loads(run("rotate_api_key", "demo", "--json"))["api_key"]
        assert first != second
        run("revoke_api_key", first[:11])
        assert make_api_client(first).get("/api/v1/organizations").status_code == 401
        assert make_api_client(second).get("/api/v1/organizations").status_code == 200

    def test_revoke_unknown_prefix_is_a_clear_error(self):
        with pytest.raises(CommandError, match="No API key"):
            run("revoke_api_key", "fb_00000000")

    def test_seed_demo_creates_a_usable_demo(self):
        output = run("seed_demo")
        key = next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("API key"))
        assert make_api_client(key).get("/api/v1/organizations").json()["organization"]["code"] == "demo"
        assert "curl" in output
        # What the output suggests trying works: two CPU-hours, one of them free, CAD 0.0075 each.
        client = make_api_client(key)
        event = {"transaction_id": "tx-1", "external_subscription_id": "demo-sub-1", "code": "cpu_seconds",
                 "properties": {"cpu_seconds": 7200}}
        assert client.post("/api/v1/events", {"event": event}, format="json").status_code == 200
        usage = client.get("/api/v1/customers/demo-customer/current_usage",
                           {"external_subscription_id": "demo-sub-1"}).json()["customer_usage"]
        assert usage["charges_usage"][0]["precise_amount"] == "0.007500"
        assert usage["currency"] == "CAD"
        run("seed_demo")  # re-running is safe
        assert Subscription.objects.filter(external_id="demo-sub-1").count() == 1


@pytest.fixture
def staff_client(client, db):
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client.force_login(admin)
    return client


@pytest.mark.django_db
class TestAdmin:
    def test_every_registered_model_has_a_working_changelist(self, staff_client, service):
        from django.contrib import admin

        for model in admin.site._registry:
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            assert staff_client.get(url).status_code == 200, url

    def test_creating_a_key_in_the_admin_shows_the_secret_once(self, staff_client, service):
        response = staff_client.post("/admin/identity/apikey/add/", {"service": service.pk, "name": "ops"})
        assert response.status_code == 200
        page = response.content.decode()
        api_key = ApiKey.objects.get(name="ops")
        start = page.index(api_key.prefix + "_")
        plaintext = page[start:page.index("<", start)]
        assert make_api_client(plaintext).get("/api/v1/organizations").status_code == 200
        detail = staff_client.get(f"/admin/identity/apikey/{api_key.pk}/change/").content.decode()
        assert plaintext not in detail

    def test_revoking_keys_in_the_admin_locks_them_out(self, staff_client, api_key, service):
        from identity import keys

        kept = keys.issue_key(service=service, name="kept").plaintext
        revoked = ApiKey.objects.get(prefix=api_key[:11])
        response = staff_client.post("/admin/identity/apikey/", {
            "action": "revoke_selected", "_selected_action": [revoked.pk]}, follow=True)
        assert "Revoked 1 key(s)." in response.content.decode()
        revoked.refresh_from_db()
        assert revoked.revoked_at is not None and not revoked.is_active
        assert make_api_client(api_key).get("/api/v1/organizations").status_code == 401
        assert make_api_client(kept).get("/api/v1/organizations").status_code == 200

    def test_usage_events_are_read_only(self, staff_client):
        assert staff_client.get("/admin/metering/usageevent/add/").status_code == 403

    def test_admin_needs_a_login(self, client):
        response = client.get("/admin/identity/service/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_settings_fail_closed_without_secret_key_and_hosts():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_DEBUG")}
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/postgres"
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "ALLOWED_HOSTS" in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_configured_runs_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_DEBUG")}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEBUG)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://", "True"]


@pytest.mark.slow
def test_a_real_worker_runs_tasks_from_redis_against_the_database(celery_worker, service):
    from tests.worker_tasks import WORKER_PING_KEY, ping_worker

    token = uuid.uuid4().hex
    ping_worker.delay(token)
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not store.get(WORKER_PING_KEY.format(token=token)):
        time.sleep(0.1)
    answer = store.get(WORKER_PING_KEY.format(token=token))
    assert answer is not None, celery_worker.log()
    assert answer.decode().endswith(f":{Service.objects.count()}")
