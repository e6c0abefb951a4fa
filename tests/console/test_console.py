"""The ops console through the Django test client: guarded actions, the audit log, masked
secrets, read-only sensitive fields, money display, the dashboard, customer 360, login policy."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from billing_kit.formatting import money_display, rate_display
from console import services as console_services
from console.models import AuditEntry, DashboardRefresh, EventHourlyRollup, OpsJob
from console.tasks import run_job
from identity import keys
from identity.models import AccountLink, ApiKey, Customer, Service
from metering.models import Subscription, SubscriptionMode, SubscriptionStatus
from webhooks import services as webhook_services
from webhooks.models import WebhookEndpoint, WebhookEvent

from .conftest import STAFF_PASSWORD, ingest

pytestmark = pytest.mark.django_db


def _actions_of_every_admin():
    for model, model_admin in admin.site._registry.items():
        for func, name, _description in model_admin._get_base_actions():
            yield model, model_admin, func, name


def test_every_admin_action_declares_the_permission_it_needs():
    undeclared = [f"{model._meta.label}.{name}" for model, _, func, name in _actions_of_every_admin()
                  if not getattr(func, "allowed_permissions", None)]
    assert undeclared == []
    # celery-beat's own actions are among them, guarded by the console.
    names = {name for model, _, _, name in _actions_of_every_admin() if model._meta.label == "django_celery_beat.PeriodicTask"}
    assert {"run_tasks", "enable_tasks", "disable_tasks", "toggle_tasks"} <= names


def test_view_only_staff_is_refused_every_action_with_403(viewer_client, billed):
    key = ApiKey.objects.first()
    refused = []
    for model, _, _, name in _actions_of_every_admin():
        if name == "export_selected_csv":
            continue  # a read: view permission is what it asks for
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = viewer_client.post(url, {"action": name, "_selected_action": ["1"], "index": "0"})
        if response.status_code != 403:
            refused.append((model._meta.label, name, response.status_code))
    assert refused == []
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    assert AuditEntry.objects.filter(username="viewer", action="refused action revoke_selected",
                                     status_code=403).exists()
    # The console's own writes too.
    assert viewer_client.post(reverse("admin:console_reconcile")).status_code == 403
    assert viewer_client.post(reverse("admin:migration_importrun_import"), {}).status_code == 403
    subscription_page = reverse("admin:metering_subscription_change", args=[billed.subscription.pk])
    assert viewer_client.post(subscription_page, {"mode": "shadow"}).status_code == 403


def test_an_action_is_audited_with_who_what_and_before_after(admin_client, service):
    issued = keys.issue_key(service=service, name="ops")
    response = admin_client.post(reverse("admin:identity_apikey_changelist"),
                                 {"action": "revoke_selected", "_selected_action": [issued.api_key.pk]})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="action revoke_selected")
    assert entry.username == "admin" and entry.target == "identity.apikey"
    assert entry.object_ids == [str(issued.api_key.pk)]
    before, after = entry.before[str(issued.api_key.pk)], entry.after[str(issued.api_key.pk)]
    assert before["revoked_at"] is None and after["revoked_at"] is not None
    # Only the hash is stored, and even that is masked in the log.
    assert issued.api_key.key_hash not in str(entry.before) + str(entry.after)
    listing = admin_client.get(reverse("admin:console_auditentry_changelist")).content.decode()
    assert "action revoke_selected" in listing
    assert admin_client.post(reverse("admin:console_auditentry_delete", args=[entry.pk]), {"post": "yes"}
                             ).status_code == 403


def test_rotating_a_webhook_secret_shows_it_once_and_the_log_masks_it(admin_client, service):
    issued = webhook_services.create_endpoint(service=service, url="http://127.0.0.1:9/hook")
    response = admin_client.post(reverse("admin:webhooks_webhookendpoint_changelist"),
                                 {"action": "rotate_and_show_secrets", "_selected_action": [issued.endpoint.pk]})
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret != issued.secret and endpoint.secret in response.content.decode()
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page and issued.secret not in page and endpoint.secret[-4:] in page
    entry = AuditEntry.objects.get(action="action rotate_and_show_secrets")
    assert endpoint.secret not in str(entry.after) and issued.secret not in str(entry.before)


def test_adding_a_service_shows_its_first_key_once(admin_client):
    response = admin_client.post(reverse("admin:identity_service_add"), {
        "code": "nexamaps", "name": "NexaMaps", "default_currency": "CAD", "is_active": "on",
        "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"})
    assert response.status_code == 200, response.content
    plaintext = response.context["plaintext"]
    assert keys.authenticate(presented=plaintext).service.code == "nexamaps"
    page = admin_client.get(reverse("admin:identity_service_change",
                                    args=[Service.objects.get(code="nexamaps").pk])).content.decode()
    assert plaintext not in page and plaintext.split("_")[1] in page  # the prefix only


def test_sensitive_fields_are_read_only(admin_client, billed):
    subscription = billed.subscription
    url = reverse("admin:metering_subscription_change", args=[subscription.pk])
    admin_client.post(url, {"mode": SubscriptionMode.SHADOW, "status": "terminated", "flat_amount": "0"})
    subscription.refresh_from_db()
    assert subscription.mode == SubscriptionMode.LIVE and subscription.status == SubscriptionStatus.ACTIVE
    page = admin_client.get(url).content.decode()
    assert 'name="mode"' not in page and "Go-live" in page
    customer_url = reverse("admin:identity_customer_change", args=[billed.customer.pk])
    form = admin_client.get(customer_url).context["adminform"].form
    assert "odoo_partner_id" not in form.fields
    # Profiles belong to each service's account: editable there; the card and the Odoo contact are not.
    account = billed.subscription.account_link
    account_form = admin_client.get(
        reverse("admin:identity_accountlink_change", args=[account.pk])).context["adminform"].form
    assert "name" in account_form.fields
    assert "odoo_invoice_partner_id" not in account_form.fields and "stripe_customer_id" not in account_form.fields


def test_ops_share_a_clients_card_between_its_accounts_only_by_the_audited_action(
        admin_client, api_client, other_api_client, billed):
    other_api_client.post("/api/v1/customers", {"customer": {"external_id": "desk_1", "email": "billing@acme.example"}},
                          format="json")
    other_api_client.post("/api/v1/customers", {"customer": {"external_id": "stranger", "email": "x@else.example"}},
                          format="json")
    cloud = billed.subscription.account_link
    AccountLink.objects.filter(pk=cloud.pk).update(stripe_customer_id="cus_cloud")
    desk = AccountLink.objects.get(external_id="desk_1")
    stranger = AccountLink.objects.get(external_id="stranger")
    changelist = reverse("admin:identity_accountlink_changelist")

    admin_client.post(changelist, {"action": "share_payment_method", "_selected_action": [cloud.pk, stranger.pk]})
    stranger.refresh_from_db()
    assert stranger.stripe_customer_id == ""  # another client: refused

    admin_client.post(changelist, {"action": "share_payment_method", "_selected_action": [cloud.pk, desk.pk]})
    desk.refresh_from_db()
    assert desk.stripe_customer_id == "cus_cloud"
    entry = AuditEntry.objects.filter(action="action share_payment_method").order_by("at", "id").last()
    assert sorted(entry.object_ids) == sorted([str(cloud.pk), str(desk.pk)])
    assert entry.before[str(desk.pk)] != entry.after[str(desk.pk)]  # who changed which card, and when


def test_plan_change_and_termination_go_through_the_services(admin_client, api_client, billed):
    response = api_client.post("/api/v1/plans", {"plan": {
        "name": "Pro", "code": "pro", "interval": "monthly", "amount_cents": 5000, "amount_currency": "CAD",
        "pay_in_advance": False, "charges": []}}, format="json")
    assert response.status_code == 200
    changelist = reverse("admin:metering_subscription_changelist")
    admin_client.post(changelist, {"action": "change_plan", "_selected_action": [billed.subscription.pk],
                                   "plan_code": "pro", "apply": "1"})
    current = Subscription.objects.get(external_id="sub_1", status=SubscriptionStatus.ACTIVE)
    assert current.plan.code == "pro"  # an upgrade: a new subscription now, the old one ended
    assert WebhookEvent.objects.filter(webhook_type="subscription.started").exists()
    admin_client.post(changelist, {"action": "terminate_subscriptions", "_selected_action": [current.pk]})
    current.refresh_from_db()
    assert current.status == SubscriptionStatus.TERMINATED
    assert WebhookEvent.objects.filter(webhook_type="subscription.terminated").exists()
    assert AuditEntry.objects.filter(action="action terminate_subscriptions", object_ids=[str(current.pk)]).exists()


def test_money_is_shown_in_minor_units_and_rates_exactly(admin_client, billed):
    assert money_display(Decimal("10.000000"), "CAD") == "CAD 10.00"
    assert money_display(Decimal("0.176063"), "CAD") == "CAD 0.18"
    assert money_display(Decimal("1500"), "JPY") == "JPY 1,500"
    assert rate_display(Decimal("0.007500"), "CAD") == "CAD 0.0075"
    assert rate_display(Decimal("2.500000"), "CAD") == "CAD 2.50"
    plans = admin_client.get(reverse("admin:metering_plan_changelist")).content.decode()
    assert "CAD 10.00" in plans and "10.000000" not in plans
    charges = admin_client.get(reverse("admin:metering_charge_changelist")).content.decode()
    assert "CAD 0.0075" in charges


def test_dashboard_is_the_admin_home_with_health_charts_and_top_customers(admin_client, api_client, billed):
    ingest(api_client, count=4, start=10)
    page = admin_client.get(reverse("admin:index"))
    assert page.status_code == 200 and "Fusion Billing" in page.content.decode()
    health = {item.key: item for item in page.context["health"]}
    assert {"database", "broker", "workers", "beat", "rating", "webhooks", "odoo", "import",
            "reconciliation"} <= set(health)
    assert health["database"].state == "ok" and health["broker"].state == "ok"
    assert health["webhooks"].url.startswith(reverse("admin:webhooks_webhookdelivery_changelist"))
    charts = {chart["key"]: chart for chart in page.context["charts"]}
    assert set(charts) == {"events", "rated", "mrr", "webhooks", "odoo"}
    [events] = charts["events"]["series"]
    assert events["label"] == "nexacloud" and sum(events["data"]) == 7  # 3 + 4 ingested
    assert charts["mrr"]["labels"] == ["nexacloud"] and charts["mrr"]["series"][0]["data"] == ["10.00"]
    assert EventHourlyRollup.objects.get().events == 7


def test_rating_lag_counts_from_each_subscriptions_end_plus_its_own_grace(admin_client, api_client, billed):
    """A window that ended a day ago is not late inside its service's 2 days of grace; on no grace it is."""
    Subscription.objects.filter(pk=billed.subscription.pk).update(
        current_period_start=timezone.now() - timedelta(days=30), current_period_end=timezone.now() - timedelta(days=1))

    def rating_lag() -> tuple[str, str]:
        item = {i.key: i for i in admin_client.get(reverse("admin:index")).context["health"]}["rating"]
        return item.state, item.text

    for days, expected in ((2, ("ok", "no window past its end")), (0, ("bad", "a window ended 24 h ago"))):
        response = api_client.put("/api/v1/organizations", {"organization": {
            "billing_configuration": {"invoice_grace_period": days}}}, format="json")
        assert response.status_code == 200
        assert rating_lag() == expected


def test_rollup_recounts_recent_hours_exactly_and_keeps_older_ones(api_client, billed):
    now = timezone.now()
    console_services.refresh_event_rollup(now=now)
    assert EventHourlyRollup.objects.get().events == 3
    ingest(api_client, count=2, start=20)
    console_services.refresh_event_rollup(now=now + timedelta(minutes=1))
    console_services.refresh_event_rollup(now=now + timedelta(minutes=2))  # idempotent
    assert sum(EventHourlyRollup.objects.values_list("events", flat=True)) == 5
    state = DashboardRefresh.objects.get()
    assert state.rolled_up_from <= now - timedelta(hours=1)


def test_customer_360_shows_the_api_current_usage(admin_client, api_client, billed):
    api = api_client.get("/api/v1/customers/cus_1/current_usage", {"external_subscription_id": "sub_1"}).json()
    cents = api["customer_usage"]["amount_cents"]
    assert cents > 0
    page = admin_client.get(reverse("admin:console_customer_360", args=[billed.customer.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "Acme Robotics" in html
    [view] = page.context["page"].subscriptions
    assert view.amount == f"CAD {Decimal(cents) / 100:.2f}"
    assert f'data-subscription="sub_1">{view.amount}</td>' in html
    assert "tx-2" in html  # recent events
    assert page.context["usage_chart"]["series"][0]["data"] == [16200.0]  # 3 x 5400 cpu seconds


def test_customer_360_links_the_odoo_partner(admin_client, billed, settings):
    settings.ODOO_URL = "https://odoo.example.com"
    Customer.objects.filter(pk=billed.customer.pk).update(odoo_partner_id=42)
    html = admin_client.get(reverse("admin:console_customer_360", args=[billed.customer.pk])).content.decode()
    assert "https://odoo.example.com/web#id=42&amp;model=res.partner&amp;view_type=form" in html


def test_customer_360_lists_webhook_deliveries_about_the_customer(admin_client, service, billed):
    webhook_services.create_endpoint(service=service, url="http://127.0.0.1:9/hook")
    webhook_services.record_event(service=service, webhook_type="customer.updated", object_type="customer",
                                  payload={"external_id": "cus_1"})
    webhook_services.record_event(service=service, webhook_type="customer.updated", object_type="customer",
                                  payload={"external_id": "someone_else"})
    page = admin_client.get(reverse("admin:console_customer_360", args=[billed.customer.pk]))
    deliveries = page.context["page"].deliveries
    assert [d.event.webhook_type for d in deliveries] == ["customer.updated"]


def test_reconciliation_runs_as_a_job_and_reports_failure_on_its_page(admin_client):
    response = admin_client.post(reverse("admin:console_reconcile"), {"service_code": "nexacloud"})
    job = OpsJob.objects.get()
    assert response["Location"] == reverse("admin:console_job", args=[job.pk])
    run_job(job.pk)  # what the worker runs: here, no nexacloud service exists
    progress = admin_client.get(reverse("admin:console_job_progress", args=[job.pk])).json()
    assert progress["finished"] and progress["status"] == "failed" and "does not exist" in progress["message"]
    assert "Reconciliation" in admin_client.get(reverse("admin:console_job", args=[job.pk])).content.decode()


def test_staff_login_is_throttled_after_repeated_failures(client, viewer):
    login = reverse("admin:login")
    answers = [client.post(login, {"username": "viewer", "password": "wrong"}).status_code
               for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # locked at the limit
    locked = client.post(login, {"username": "viewer", "password": STAFF_PASSWORD})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_staff_passwords_are_validated_and_sessions_last_twelve_hours(client, viewer):
    with pytest.raises(ValidationError):
        validate_password("password1", User(username="x"))
    with pytest.raises(ValidationError):
        validate_password("short7Qx", User(username="x"))
    validate_password("a-long-enough-passphrase-7Q", User(username="x"))
    response = client.post(reverse("admin:login"), {"username": "viewer", "password": STAFF_PASSWORD,
                                                    "next": reverse("admin:index")})
    assert response.status_code == 302
    assert client.session.get_expiry_age() == 12 * 3600


def test_customer_list_links_to_the_360_page(admin_client, billed):
    listing = admin_client.get(reverse("admin:identity_customer_changelist")).content.decode()
    assert reverse("admin:console_customer_360", args=[billed.customer.pk]) in listing
    assert Customer.objects.count() == 1


def test_customer_list_labels_rows_without_a_query_per_customer(admin_client, api_client, billed):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:identity_customer_changelist")
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(url).status_code == 200
    for n in range(5):
        api_client.post("/api/v1/customers", {"customer": {"external_id": f"more_{n}", "name": f"Client {n}",
                                                           "email": f"c{n}@example.com"}}, format="json")
    with CaptureQueriesContext(connection) as six:
        listing = admin_client.get(url).content.decode()
    assert "Client 4" in listing
    assert len(six.captured_queries) == len(one.captured_queries)
