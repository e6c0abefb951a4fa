"""The management commands on the embedded SQLite default.

The operator commands work; the two that need PostgreSQL (Odoo sync, the NexaCloud
migration) refuse with a clear message instead of failing halfway."""
from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from standardwebhooks.webhooks import Webhook

from migration.models import ImportRun
from odoo_bridge.client import reset_client
from odoo_bridge.testing import FakeOdoo
from tests.conftest import make_api_client
from webhooks.testing.receiver import WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)

KEY = re.compile(r"fb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def can_list_customers(api_key: str) -> bool:
    status = make_api_client(api_key).get("/api/v1/customers").status_code
    assert status in (200, 401)
    return status == 200


def test_create_rotate_and_revoke_keys_and_deliver_the_first_webhook():
    with WebhookReceiver() as receiver:
        created = json.loads(command("create_service", "nexamaps", "--name", "NexaMaps", "--json",
                                     "--webhook-url", receiver.url()))
        first = created["api_key"]
        assert KEY.fullmatch(first) and can_list_customers(first)
        response = make_api_client(first).post("/api/v1/customers", {"customer": {"external_id": "c1"}},
                                               format="json")
        assert response.status_code == 200, response.content
        assert "1 succeeded" in command("deliver_webhooks")
        (request,) = receiver.received()
        assert Webhook(created["webhook_secret"]).verify(request.body, request.headers)["webhook_type"] == \
            "customer.created"

    with pytest.raises(CommandError, match="already exists"):
        command("create_service", "nexamaps", "--name", "Again")
    second = KEY.search(command("rotate_api_key", "nexamaps")).group()
    assert second != first and can_list_customers(second) and can_list_customers(first)
    command("revoke_api_key", first[:11])
    assert not can_list_customers(first) and can_list_customers(second)


def test_seed_demo_prints_a_key_that_ingests_usage():
    output = command("seed_demo")
    api_key = KEY.search(output).group()
    response = make_api_client(api_key).post("/api/v1/events", {"event": {
        "transaction_id": "tx-demo", "external_subscription_id": "demo-sub-1", "code": "cpu_seconds",
        "properties": {"cpu_seconds": 7200}}}, format="json")
    assert response.status_code == 200, response.content
    assert "1 created" in command("rate_usage", "--service", "demo")
    with pytest.raises(CommandError, match="unknown service"):
        command("rate_usage", "--service", "nope")


def test_odoo_sync_says_it_needs_postgresql_and_calls_nothing(settings):
    with pytest.raises(SystemExit) as exit_info:
        command("odoo_sync")
    assert exit_info.value.code == 1
    reset_client()
    with FakeOdoo(version="17.0") as odoo:
        settings.ODOO_URL, settings.ODOO_DB = odoo.url, odoo.db
        settings.ODOO_USER, settings.ODOO_API_KEY = odoo.login, odoo.api_key
        err = StringIO()
        with pytest.raises(SystemExit) as exit_info:
            call_command("odoo_sync", stdout=StringIO(), stderr=err)
        assert exit_info.value.code == 1
        assert "push stopped: Odoo sync needs PostgreSQL" in err.getvalue()
        assert "pull stopped: Odoo sync needs PostgreSQL" in err.getvalue()
        assert odoo.call_count() == 0
    reset_client()


def test_the_nexacloud_migration_says_it_needs_postgresql(service):
    with pytest.raises(CommandError, match="needs PostgreSQL") as error:
        command("import_nexacloud", "--dsn", "postgres://nobody@127.0.0.1:1/none")
    assert error.value.returncode == 1
    run = ImportRun.objects.get()
    assert run.status == "failed" and "needs PostgreSQL" in run.fatal_error
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        command("reconcile", "--service", "nexacloud")
