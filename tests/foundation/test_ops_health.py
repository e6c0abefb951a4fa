"""/ops/health: who may read it, what it costs per request, what it reports (#17)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing_project import health

pytestmark = pytest.mark.django_db


def test_ops_health_refuses_anonymous_callers_with_a_lago_error(client):
    response = client.get("/ops/health")
    assert response.status_code == 401
    assert response.json() == {"status": 401, "error": "Unauthorized"}


def test_ops_health_answers_the_configured_bearer_token_only(client, settings):
    settings.OPS_HEALTH_TOKEN = "ops-" + "k" * 40
    assert client.get("/ops/health", HTTP_AUTHORIZATION="Bearer " + settings.OPS_HEALTH_TOKEN).status_code == 200
    assert client.get("/ops/health", HTTP_AUTHORIZATION="Bearer ops-wrong").status_code == 401
    assert client.get("/ops/health", HTTP_AUTHORIZATION=settings.OPS_HEALTH_TOKEN).status_code == 401
    settings.OPS_HEALTH_TOKEN = ""  # no token configured: an empty bearer is no key
    assert client.get("/ops/health", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_ops_health_answers_staff_sessions_not_other_users(client, admin_client):
    assert admin_client.get("/ops/health").status_code == 200
    user = get_user_model().objects.create_user("clerk", password="pw-" + "x" * 20)
    client.force_login(user)
    assert client.get("/ops/health").status_code == 401


def test_probes_run_once_per_cache_period_whatever_the_request_rate(admin_client, settings, monkeypatch):
    calls = {"broker": 0, "odoo": 0, "workers": 0}

    def counting(name, check):
        def probe():
            calls[name] += 1
            return check()
        return probe

    monkeypatch.setitem(health.REQUIRED_CHECKS, "broker", counting("broker", health.check_broker))
    monkeypatch.setitem(health.REPORTED_CHECKS, "odoo", counting("odoo", health.REPORTED_CHECKS["odoo"]))
    monkeypatch.setitem(health.REPORTED_CHECKS, "workers", counting("workers", health.check_workers))
    settings.OPS_HEALTH_CACHE_SECONDS = 3600
    bodies = [admin_client.get("/ops/health").json() for _ in range(5)]
    assert calls == {"broker": 1, "odoo": 1, "workers": 1}
    assert len({b["checked_at"] for b in bodies}) == 1
    settings.OPS_HEALTH_CACHE_SECONDS = 0
    admin_client.get("/ops/health")
    assert calls == {"broker": 2, "odoo": 2, "workers": 2}


def test_lago_health_stays_public_and_touches_nothing(client, django_assert_num_queries, monkeypatch):
    monkeypatch.setattr(health, "run_checks", lambda: pytest.fail("/health must not probe anything"))
    with django_assert_num_queries(0):
        response = client.get("/health")
    assert response.status_code == 200 and response.json()["message"] == "Success"


def test_beat_is_reported_by_its_newest_run(admin_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="probe", task="webhooks.tasks.sweep_due_deliveries", interval=every)
    beat = admin_client.get("/ops/health").json()["checks"]["beat"]
    assert beat == {"ok": False, "last_run_at": None, "error": "beat never ran"}
    health.clear_cache()
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now() - timedelta(seconds=20))
    beat = admin_client.get("/ops/health").json()["checks"]["beat"]
    assert beat["ok"] is True and 19 <= beat["seconds_ago"] <= 120
    health.clear_cache()
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now() - timedelta(hours=1))
    assert admin_client.get("/ops/health").json()["checks"]["beat"]["ok"] is False


def test_live_workers_are_listed(admin_client, celery_worker):
    workers = admin_client.get("/ops/health").json()["checks"]["workers"]
    assert workers["ok"] is True and celery_worker.name in workers["names"]
    health.clear_cache()
    celery_worker.stop()
    workers = admin_client.get("/ops/health").json()["checks"]["workers"]
    assert celery_worker.name not in workers["names"]


def test_openapi_schema_is_generated_once_then_served_from_memory(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from billing_kit import docs

    monkeypatch.setattr(docs, "_schemas", {})
    generated = []
    original = SchemaGenerator.get_schema

    def counting(self, *args, **kwargs):
        generated.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    first = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    second = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and b'"/api/v1/customers"' in first.content
    assert len(generated) == 1
