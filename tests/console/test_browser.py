"""The ops console in a real browser: Playwright drives Debian's chromium (/usr/bin/chromium,
installed by scripts/ensure-services; no browser download) against a live server.

``test_dashboard_draws_its_charts`` and ``test_customer_360_shows_the_api_current_usage`` save
screenshots to ``artefacts/screenshots/`` (git-ignored) for a reviewer to look at.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import Browser, Page, expect, sync_playwright

from identity import keys
from identity.models import Service
from migration.models import ImportRun, Reconciliation
from webhooks import delivery
from webhooks import services as webhook_services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.testing.receiver import Fault, WebhookReceiver

from tests.api.conftest import create_catalogue, create_subscription

from .conftest import STAFF_PASSWORD, ingest

# Playwright's sync API runs an event loop in the test's thread; the test's own database
# calls are synchronous and safe there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts" / "screenshots"
WAIT_MS = 120_000  # a loaded 2-core machine: workers and imports take their time


@pytest.fixture(scope="module")
def browser() -> Browser:
    with sync_playwright() as playwright:
        # --no-sandbox: the suite runs as root in CI, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def operator(transactional_db) -> User:
    return User.objects.create_superuser("operator", "operator@example.com", STAFF_PASSWORD)


def _logged_in(browser: Browser, live_server, username: str) -> Page:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#health-strip")).to_be_visible()
    return page


@pytest.fixture
def page(browser, live_server, operator) -> Page:
    page = _logged_in(browser, live_server, "operator")
    yield page
    page.context.close()


def _datasets(page: Page, canvas: str) -> int:
    return page.evaluate("(id) => Chart.getChart(document.getElementById(id)).data.datasets.length", canvas)


def test_dashboard_draws_its_charts(browser, live_server, operator, api_client, other_api_client, billed):
    # A second service with usage: the events chart has one series per service.
    create_catalogue(other_api_client)
    create_subscription(other_api_client, external_id="desk_1", customer="desk_cus",
                        subscription_at="2026-01-01T00:00:00Z")
    ingest(other_api_client, count=2, external_id="desk_1")
    call_command("rate_usage", stdout=io.StringIO())
    page = _logged_in(browser, live_server, "operator")  # the login lands on the dashboard
    expect(page.locator("h1")).to_contain_text("Fusion Billing")
    expect(page.locator('[data-health="database"]')).to_have_attribute("data-state", "ok")
    assert page.locator("#charts canvas").count() == 5
    assert _datasets(page, "chart-events") == 2  # nexacloud and nexadesk
    assert _datasets(page, "chart-mrr") == 1
    labels = page.evaluate("() => Chart.getChart(document.getElementById('chart-mrr')).data.labels")
    assert labels == ["nexacloud", "nexadesk"]
    assert _datasets(page, "chart-rated") == 2
    for canvas in ("chart-webhooks", "chart-odoo"):
        assert _datasets(page, canvas) == 1
    expect(page.locator("#top-customers")).to_contain_text("Acme Robotics")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "dashboard.png"), full_page=True)
    page.context.close()


def test_customer_360_shows_the_api_current_usage(page, api_client, billed):
    usage = api_client.get("/api/v1/customers/cus_1/current_usage",
                           {"external_subscription_id": "sub_1"}).json()["customer_usage"]
    shown = f"CAD {usage['amount_cents'] // 100}.{usage['amount_cents'] % 100:02d}"
    page.goto("/admin/identity/customer/")
    page.click("text=Acme Robotics")
    expect(page.locator("#customer-360")).to_be_visible()
    expect(page.locator('.usage-amount[data-subscription="sub_1"]')).to_have_text(shown)
    assert _datasets(page, "chart-usage") == 2  # current and previous window
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "customer_360.png"), full_page=True)


def test_a_new_service_shows_its_key_once(page, live_server):
    page.goto("/admin/identity/service/add/")
    page.fill("#id_code", "nexamaps")
    page.fill("#id_name", "NexaMaps")
    page.click("input[name=_save]")
    key = page.locator("#api-key-secret").inner_text().strip()
    assert keys.authenticate(presented=key).service.code == "nexamaps"
    page.goto(f"/admin/identity/service/{Service.objects.get(code='nexamaps').pk}/change/")
    assert key not in page.content() and key.split("_")[1] in page.content()


def test_rotating_a_webhook_secret_shows_it_once(page, service):
    issued = webhook_services.create_endpoint(service=service, url="http://127.0.0.1:9/hook")
    page.goto("/admin/webhooks/webhookendpoint/")
    page.check(f'input[name="_selected_action"][value="{issued.endpoint.pk}"]')
    page.select_option("select[name=action]", "rotate_and_show_secrets")
    page.click("button[name=index]")
    secret = page.locator("code.webhook-secret").inner_text().strip()
    endpoint = WebhookEndpoint.objects.get()
    assert secret == endpoint.secret and secret != issued.secret
    page.goto(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
    assert secret not in page.content()


def test_replay_import_progress_reconciliation_and_csv(page, service, start_celery_worker, nexacloud_dsn,
                                                       settings):
    """The long work runs on a real worker; its pages show the progress bar reach 100 %."""
    settings.NEXACLOUD_DSN = nexacloud_dsn
    start_celery_worker(queues="celery,webhooks", env={"NEXACLOUD_DSN": nexacloud_dsn})
    with WebhookReceiver() as receiver:
        # A dead letter: the receiver failed the only attempt allowed.
        settings.WEBHOOK_MAX_ATTEMPTS = 1
        webhook_services.create_endpoint(service=service, url=receiver.url())
        receiver.add_faults("/hook", Fault.error(500, b"down for maintenance"))
        event = webhook_services.record_event(service=service, webhook_type="customer.updated",
                                              object_type="customer", payload={"external_id": "c1"})
        delivery.deliver(event_ids=[event.id])
        dead = WebhookDelivery.objects.get()
        assert dead.status == WebhookDelivery.DEAD

        page.goto("/admin/webhooks/webhookdelivery/?status__exact=dead")
        page.check(f'input[name="_selected_action"][value="{dead.pk}"]')
        page.select_option("select[name=action]", "replay_as_job")
        page.click("button[name=index]")
        expect(page.locator("#job-progress .fb-progress-label")).to_have_text("100 %", timeout=WAIT_MS)
        expect(page.locator("#job-progress .fb-progress-message")).to_contain_text("Queued 1 deliveries")
        dead.refresh_from_db()
        for _ in range(120):
            if dead.status == WebhookDelivery.SUCCEEDED:
                break
            page.wait_for_timeout(500)
            dead.refresh_from_db()
        assert dead.status == WebhookDelivery.SUCCEEDED and len(receiver.received("/hook")) == 2

    page.goto("/admin/migration/importrun/import/")
    page.uncheck("#id_dry_run")
    page.click("input[type=submit]")
    expect(page.locator("#import-progress")).to_be_visible()
    expect(page.locator("#import-progress .fb-progress-label")).to_have_text("100 %", timeout=WAIT_MS)
    expect(page.locator("#banner")).to_have_attribute("data-banner", "red", timeout=WAIT_MS)  # fixture's bad rows
    run = ImportRun.objects.get()
    assert run.finished_at is not None and run.total("created") > 0

    page.goto("/admin/migration/reconciliation/")
    page.click("#run-reconciliation")
    expect(page.locator("#job-progress .fb-progress-label")).to_have_text("100 %", timeout=WAIT_MS)
    assert Reconciliation.objects.exists()
    page.goto("/admin/migration/reconciliation/")
    with page.expect_download() as download_info:
        page.click("text=Export CSV")
    download = download_info.value
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert download.suggested_filename == "reconciliation.csv"
    assert len(rows) == Reconciliation.objects.count() and "external_subscription_id" in rows[0]


def test_view_only_staff_cannot_run_any_action(browser, live_server, viewer, service):
    issued = keys.issue_key(service=service, name="ops")
    page = _logged_in(browser, live_server, "viewer")
    page.goto("/admin/identity/apikey/")
    offered = page.locator("select[name=action] option").all_inner_texts()
    assert not any("Revoke" in text for text in offered)
    # Forging the action's POST from the browser (with a valid CSRF token) is refused.
    status = page.evaluate("""async ([pk]) => {
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const body = new URLSearchParams({csrfmiddlewaretoken: token, action: 'revoke_selected',
                                          _selected_action: pk, index: '0'});
        const response = await fetch('/admin/identity/apikey/', {method: 'POST', body, credentials: 'same-origin'});
        return response.status;
    }""", [str(issued.api_key.pk)])
    assert status == 403
    page.goto("/admin/console/reconcile/")
    assert "403" in page.title() or "Forbidden" in page.content()
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None
    page.context.close()
