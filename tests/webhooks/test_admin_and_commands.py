"""Staff operations through the Django admin, and the management commands."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from standardwebhooks.webhooks import Webhook

from console.models import OpsJob
from console.tasks import run_job
from webhooks import delivery, services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.testing.receiver import Fault

from .conftest import make_due

pytestmark = pytest.mark.django_db


def dead_delivery(service, receiver, make_endpoint, emit, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.error(500, b"database on fire"))
    event = emit(service)
    delivery.deliver(event_ids=[event.id])
    d = event.deliveries.get()
    assert d.status == WebhookDelivery.DEAD
    return d


def test_endpoint_page_masks_the_secret_and_lists_endpoints(admin_client, service, make_endpoint):
    issued = make_endpoint(service, "http://127.0.0.1:9/hook")
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[issued.endpoint.pk]))
    assert page.status_code == 200 and issued.secret not in page.content.decode()
    assert issued.secret[-4:] in page.content.decode()  # recognisable by its last characters
    listing = admin_client.get(reverse("admin:webhooks_webhookendpoint_changelist"))
    assert "http://127.0.0.1:9/hook" in listing.content.decode()


def test_staff_creates_endpoint_with_ssrf_check(admin_client, service):
    url = reverse("admin:webhooks_webhookendpoint_add")
    bad = admin_client.post(url, {"service": service.pk, "url": "https://169.254.169.254/", "name": "",
                                  "event_types": "null", "is_active": "on"})
    assert bad.status_code == 200 and "non-public address" in bad.content.decode()
    assert not WebhookEndpoint.objects.exists()
    good = admin_client.post(url, {"service": service.pk, "url": "http://127.0.0.1:9/h", "name": "ops",
                                   "event_types": '["invoice.created"]', "is_active": "on"})
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and endpoint.event_types == ["invoice.created"]
    # Shown once, on the page answering the creation; masked on the endpoint's own page.
    assert good.status_code == 200 and endpoint.secret in good.content.decode()
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert endpoint.secret not in page.content.decode()


def test_disable_and_enable_actions(admin_client, service, make_endpoint, emit):
    endpoint = make_endpoint(service, "http://127.0.0.1:9/hook").endpoint
    changelist = reverse("admin:webhooks_webhookendpoint_changelist")
    admin_client.post(changelist, {"action": "disable_endpoints", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_reason.startswith("disabled by")
    assert emit(service).deliveries.count() == 0
    admin_client.post(changelist, {"action": "enable_endpoints", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_reason == ""
    assert emit(service).deliveries.count() == 1


def test_enabling_an_endpoint_queues_what_came_due_while_it_was_disabled(
        admin_client, service, receiver, make_endpoint, emit, monkeypatch, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(service, receiver.url()).endpoint
    event = emit(service)
    changelist = reverse("admin:webhooks_webhookendpoint_changelist")
    admin_client.post(changelist, {"action": "disable_endpoints", "_selected_action": [endpoint.pk]})
    assert delivery.deliver(event_ids=[event.id]) == []  # due, but a disabled endpoint is not sent to
    queued = []
    monkeypatch.setattr(delivery, "_enqueue", lambda name, args: queued.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(changelist, {"action": "enable_endpoints", "_selected_action": [endpoint.pk]})
    assert queued == [("webhooks.tasks.deliver_deliveries", [[str(event.deliveries.get().pk)]])]


def test_rotate_action_keeps_old_secret_valid(admin_client, service, receiver, make_endpoint, emit):
    issued = make_endpoint(service, receiver.url())
    shown = admin_client.post(reverse("admin:webhooks_webhookendpoint_changelist"),
                              {"action": "rotate_and_show_secrets", "_selected_action": [issued.endpoint.pk]})
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret != issued.secret and endpoint.previous_secret == issued.secret
    assert endpoint.secret in shown.content.decode()  # the new secret, shown once
    emit(service)
    call_command("deliver_webhooks", stdout=StringIO())
    [request] = receiver.received()
    Webhook(issued.secret).verify(request.body, request.headers)
    Webhook(endpoint.secret).verify(request.body, request.headers)


def test_delivery_filters_attempt_history_and_replay(admin_client, service, receiver, make_endpoint, emit, settings):
    d = dead_delivery(service, receiver, make_endpoint, emit, settings)
    emit(service, webhook_type="customer.created", object_type="customer", payload={"external_id": "c"})
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    dead = admin_client.get(changelist, {"status__exact": "dead"}).context["cl"].result_list
    assert [x.pk for x in dead] == [d.pk]
    by_type = admin_client.get(changelist, {"event__webhook_type": "customer.created"}).context["cl"].result_list
    assert [x.event.webhook_type for x in by_type] == ["customer.created"]
    detail = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[d.pk])).content.decode()
    assert "database on fire" in detail and "500" in detail  # attempt history with excerpt
    response = admin_client.post(changelist, {"action": "replay_as_job", "_selected_action": [d.pk]})
    job = OpsJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("admin:console_job", args=[job.pk])
    run_job(job.pk)  # what the worker runs
    progress = admin_client.get(reverse("admin:console_job_progress", args=[job.pk])).json()
    assert progress["percent"] == 100 and "Queued 1 deliveries for redelivery" in progress["message"]
    d.refresh_from_db()
    assert d.status == WebhookDelivery.PENDING and d.replay_count == 1
    call_command("deliver_webhooks", stdout=StringIO())
    d.refresh_from_db()
    assert d.status == WebhookDelivery.SUCCEEDED


def test_event_pages_and_replay_of_many(admin_client, service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    events = [emit(service) for _ in range(2)]
    call_command("deliver_webhooks", stdout=StringIO())
    changelist = reverse("admin:webhooks_webhookevent_changelist")
    page = admin_client.get(changelist, {"webhook_type": "invoice.created"})
    assert len(page.context["cl"].result_list) == 2 and "1 succeeded" in page.content.decode()
    detail = admin_client.get(reverse("admin:webhooks_webhookevent_change", args=[events[0].pk])).content.decode()
    assert "NXC-2026-0001" in detail  # the body is readable
    admin_client.post(changelist, {"action": "replay_events_as_job", "_selected_action": [e.pk for e in events]})
    run_job(OpsJob.objects.get().pk)  # what the worker runs
    call_command("deliver_webhooks", stdout=StringIO())
    assert len(receiver.received()) == 4


def test_create_service_with_webhook_url(receiver):
    out = StringIO()
    call_command("create_service", "nexamaps", "--name", "NexaMaps", "--json", "--webhook-url", receiver.url(),
                 stdout=out)
    result = json.loads(out.getvalue())
    endpoint = WebhookEndpoint.objects.get(pk=result["webhook_endpoint_id"])
    assert endpoint.service.code == "nexamaps" and endpoint.url == receiver.url()
    assert result["webhook_secret"] == endpoint.secret and result["api_key"]
    services.record_event(service=endpoint.service, webhook_type="subscription.started",
                          object_type="subscription", payload={"external_id": "s1"})
    call_command("deliver_webhooks", stdout=StringIO())
    [request] = receiver.received()
    assert Webhook(result["webhook_secret"]).verify(request.body, request.headers)["webhook_type"] == \
        "subscription.started"


def test_create_service_refuses_unsafe_webhook_url_and_creates_nothing():
    from identity.models import Service

    with pytest.raises(CommandError, match="webhook-url refused"):
        call_command("create_service", "evil", "--name", "Evil", "--webhook-url", "https://169.254.169.254/",
                     stdout=StringIO())
    assert not Service.objects.filter(code="evil").exists()


def test_create_service_text_output_shows_secret_once(receiver):
    out = StringIO()
    call_command("create_service", "nexadesk2", "--name", "D", "--webhook-url", receiver.url(), stdout=out)
    assert "Webhook signing secret (shown once" in out.getvalue()


def test_deliver_webhooks_command_skips_not_yet_due(service, receiver, make_endpoint, emit):
    make_endpoint(service, receiver.url())
    receiver.add_faults("/hook", Fault.error(500))
    event = emit(service)
    call_command("deliver_webhooks", stdout=StringIO())
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)  # the retry is seconds away
    assert "attempted 0" in out.getvalue()
    make_due(event.deliveries.get())
    call_command("deliver_webhooks", stdout=out)
    assert event.deliveries.get().status == WebhookDelivery.SUCCEEDED


def test_staff_edits_an_endpoint_but_cannot_move_it_to_another_service(admin_client, service, other_service,
                                                                        make_endpoint):
    endpoint = make_endpoint(service, "http://127.0.0.1:9/hook").endpoint
    url = reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    response = admin_client.post(url, {"service": other_service.pk, "url": "http://127.0.0.1:9/new", "name": "x",
                                       "event_types": '["invoice.voided"]', "is_active": ""})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.service == service and endpoint.url == "http://127.0.0.1:9/new"
    assert endpoint.event_types == ["invoice.voided"] and not endpoint.is_active


@pytest.mark.django_db(transaction=True)
def test_beat_entry_is_installed_by_the_database_scheduler():
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from billing_project.celery import app

    DatabaseScheduler(app=app)  # syncs CELERY_BEAT_SCHEDULE into the database, where staff can edit it
    task = PeriodicTask.objects.get(name="webhooks-sweep-due-deliveries")
    assert task.task == "webhooks.tasks.sweep_due_deliveries" and task.enabled
    assert task.queue == "webhooks"
    assert task.interval.every == 5 and task.interval.period == "seconds"
    assert task.expire_seconds == 10
