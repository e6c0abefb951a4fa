"""Management command, Celery tasks on a real worker, health check, admin actions."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from console.models import OpsJob
from console.tasks import run_job
from odoo_bridge.health import check_odoo
from odoo_bridge.models import ConnectionStatus, OdooConnectionState, OdooSyncState, SyncKind, SyncStatus

pytestmark = pytest.mark.django_db


def test_odoo_sync_command_pushes_and_pulls(fake_odoo, catalog, capsys):
    sub = catalog.subscription()
    catalog.fee(sub, amount="49.000000")  # arrears fee of [Nov 1, Dec 1): invoiced Dec 1
    call_command("odoo_sync", "--push")
    out = capsys.readouterr().out
    assert "1 order(s) created" in out
    fake_odoo.run_invoicing_cron(today=__import__("datetime").date(2026, 12, 1))
    call_command("odoo_sync", "--pull")
    assert "1 invoice(s) created" in capsys.readouterr().out
    assert sub.invoices.count() == 1


def test_odoo_sync_command_fails_loudly_when_odoo_is_down(fake_odoo, catalog, capsys):
    catalog.subscription()
    fake_odoo.go_down()
    with pytest.raises(SystemExit):
        call_command("odoo_sync")
    assert "unreachable" in capsys.readouterr().err


def test_health_check_reports_answering_down_and_broken(fake_odoo, catalog, settings):
    assert check_odoo()["ok"] is True and check_odoo()["server_version"] == "17.0+e"
    settings.ODOO_API_KEY = "wrong"
    from odoo_bridge.sync import push_cycle

    push_cycle()
    result = check_odoo()
    assert result["ok"] is False and result["connection"] == ConnectionStatus.BROKEN
    logins = fake_odoo.failed_logins
    check_odoo()
    assert fake_odoo.failed_logins == logins  # the probe never logs in
    fake_odoo.go_down()
    assert check_odoo()["ok"] is False


def test_health_check_when_not_configured(settings):
    settings.ODOO_URL = ""
    assert check_odoo() == {"ok": True, "configured": False}


def test_ops_health_endpoint_includes_odoo(fake_odoo, admin_client):
    body = admin_client.get("/ops/health").json()
    assert body["checks"]["odoo"]["ok"] is True


def test_admin_resync_action_and_connection_page(fake_odoo, catalog, admin_client):
    sub = catalog.subscription()
    from odoo_bridge.sync import push_cycle

    push_cycle()
    state = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION)
    response = admin_client.post("/admin/odoo_bridge/odoosyncstate/", {
        "action": "resync_as_job", "_selected_action": [state.pk]})
    assert response.status_code == 302  # to the job's progress page
    run_job(OpsJob.objects.get().pk)  # what the worker runs
    state.refresh_from_db()
    assert state.status == SyncStatus.PENDING and state.pushed_hash == ""
    fake_odoo.reset_counters()
    push_cycle()
    state.refresh_from_db()
    assert state.status == SyncStatus.SYNCED
    assert fake_odoo.call_count(model="sale.order", method="search_read") == 1
    assert len(fake_odoo.records("sale.order")) == 1  # searched, found, not duplicated
    page = admin_client.get("/admin/odoo_bridge/odooconnectionstate/")
    assert page.status_code == 200 and "17.0+e" in page.content.decode()
    listing = admin_client.get("/admin/odoo_bridge/odoosyncstate/?status__exact=synced")
    assert str(sub) in listing.content.decode()


def test_admin_reset_connection_after_access_denied(fake_odoo, catalog, admin_client, settings):
    from odoo_bridge.sync import push_cycle

    catalog.subscription()
    original_key = fake_odoo.api_key
    fake_odoo.revoke_api_key()
    push_cycle()
    assert OdooConnectionState.objects.get().status == ConnectionStatus.BROKEN
    fake_odoo.api_key = original_key  # the Odoo admin re-enables the same key
    fake_odoo.reset_counters()
    assert "broken" in push_cycle().aborted
    assert fake_odoo.call_count() == 0  # same credentials: silent until a human says otherwise
    admin_client.post("/admin/odoo_bridge/odooconnectionstate/", {
        "action": "reset_connection", "_selected_action": [1]}, follow=True)
    assert OdooConnectionState.objects.get().status == ConnectionStatus.UNKNOWN
    assert push_cycle().orders_created == 1


@pytest.mark.slow
def test_push_and_pull_tasks_run_on_a_real_celery_worker(fake_odoo, catalog, start_celery_worker):
    import time

    from odoo_bridge import tasks

    sub = catalog.subscription()
    catalog.fee(sub, amount="49.000000")  # arrears fee of [Nov 1, Dec 1): invoiced Dec 1
    worker = start_celery_worker(queues="odoo", env={
        "ODOO_URL": fake_odoo.url, "ODOO_DB": fake_odoo.db, "ODOO_USER": fake_odoo.login,
        "ODOO_API_KEY": fake_odoo.api_key, "DJANGO_DEBUG": "1"})
    tasks.push_to_odoo.delay()
    deadline = time.monotonic() + 60
    # Wait for the confirmed order (created, then confirmed): invoicing a draft bills nothing.
    while time.monotonic() < deadline and not fake_odoo.records(
            "sale.order", [["subscription_state", "=", "3_progress"]]):
        time.sleep(0.2)
    assert [o["client_order_ref"] for o in fake_odoo.records("sale.order", [], ["client_order_ref"])] == [
        f"fb-sub-{sub.pk}"], worker.log()
    fake_odoo.run_invoicing_cron(today=__import__("datetime").date(2026, 12, 1))
    tasks.pull_from_odoo.delay()
    while time.monotonic() < deadline and not sub.invoices.exists():
        time.sleep(0.2)
    assert sub.invoices.count() == 1, worker.log()


def test_config_check_at_connect_reports_precision_and_the_invoicing_cron(fake_odoo, catalog, admin_client, settings):
    """Rates 0.02 and 0.0075 need 4 price digits, Odoo has 2; the cron runs at 00:00:30 UTC, before the window
    close + grace 600 s + two 60 s sync intervals = 00:12:00. Both reported; fixed, the report is clean."""
    from odoo_bridge.connection import open_client, refresh_config_report
    from odoo_bridge.models import OdooConnectionState

    settings.RATING_GRACE_SECONDS, settings.ODOO_SYNC_INTERVAL_SECONDS = 600, 60
    cron_id = fake_odoo.store.xmlid_id("sale_subscription", "account_analytic_cron_for_invoice")
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 00:00:30"})
    open_client()
    report = OdooConnectionState.objects.get().config_report
    assert (report["price_digits"], report["rate_digits_needed"]) == (2, 4)
    assert report["invoicing_cron"]["nextcall"] == "2026-12-02 00:00:30"
    assert report["invoicing_cron"]["earliest_time"] == "00:12:00"
    assert len(report["warnings"]) == 2 and "before 00:12" in report["warnings"][1]
    odoo = admin_client.get("/ops/health").json()["checks"]["odoo"]
    assert odoo["ok"] is False and odoo["config"]["invoicing_cron"]["active"] is True
    assert "Product Price precision is 2 digits" in odoo["error"]

    settings.OPS_HEALTH_CACHE_SECONDS = 0  # the next probe must see the change at once
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 01:00:00"})
    fake_odoo.store.write("decimal.precision", [fake_odoo.store.xmlid_id("product", "decimal_price")], {"digits": 4})
    report = refresh_config_report(open_client(), force=True)
    assert report["warnings"] == [] and report["price_digits"] == 4
    assert admin_client.get("/ops/health").json()["checks"]["odoo"]["ok"] is True


def test_admin_rechecks_the_odoo_configuration_on_demand(fake_odoo, catalog, admin_client):
    from odoo_bridge.connection import open_client
    from odoo_bridge.models import OdooConnectionState

    open_client()  # checked at connect: the cron has no next call yet, rates need 4 digits
    state = OdooConnectionState.objects.get()
    cron_id = fake_odoo.store.xmlid_id("sale_subscription", "account_analytic_cron_for_invoice")
    fake_odoo.store.write("ir.cron", [cron_id], {"active": False})
    response = admin_client.post("/admin/odoo_bridge/odooconnectionstate/", {
        "action": "check_config_now", "_selected_action": [state.pk]}, follow=True)
    assert "cron is not active" in " ".join(str(m) for m in response.context["messages"])
    state.refresh_from_db()
    assert state.config_report["invoicing_cron"]["active"] is False


def test_invoicing_time_is_checked_in_every_billing_timezone_in_use(fake_odoo, catalog, admin_client, settings):
    """Odoo's cron compares next_invoice_date with the UTC date. Grace 600 s + two 60 s syncs = 12 min
    after each local midnight: UTC needs 00:12 UTC, Asia/Tokyo (UTC+9) is ready long before its UTC day
    starts, America/Toronto needs 05:12 UTC (EST, the worst of the year). A run at 01:00 UTC on Dec 1
    would invoice a Toronto order whose November closes at 05:00 UTC: Toronto is at risk, and only it.
    Shadow and terminated subscriptions' timezones are not in use (Honolulu, Los Angeles)."""
    from metering.models import Subscription
    from odoo_bridge.connection import open_client, refresh_config_report

    settings.RATING_GRACE_SECONDS, settings.ODOO_SYNC_INTERVAL_SECONDS = 600, 60
    settings.OPS_HEALTH_CACHE_SECONDS = 0
    for zone, mode, status in [("America/Toronto", "live", "active"), ("America/Toronto", "live", "active"),
                               ("Asia/Tokyo", "live", "active"), ("Pacific/Honolulu", "shadow", "active"),
                               ("America/Los_Angeles", "live", "terminated")]:
        sub = catalog.subscription(mode=mode, status=status)
        Subscription.objects.filter(pk=sub.pk).update(billing_timezone=zone)
    cron_id = fake_odoo.store.xmlid_id("sale_subscription", "account_analytic_cron_for_invoice")
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 01:00:00"})
    fake_odoo.store.write("decimal.precision", [fake_odoo.store.xmlid_id("product", "decimal_price")], {"digits": 4})
    report = refresh_config_report(open_client(), force=True)
    cron = report["invoicing_cron"]
    assert cron["timezones"] == [
        {"timezone": "America/Toronto", "subscriptions": 2, "earliest_utc": "05:12:00", "at_risk": True,
         "grace_seconds": 600},
        {"timezone": "Asia/Tokyo", "subscriptions": 1, "earliest_utc": "00:00:00", "at_risk": False,
         "grace_seconds": 600},
        {"timezone": "UTC", "subscriptions": 0, "earliest_utc": "00:12:00", "at_risk": False, "grace_seconds": 600}]
    assert cron["at_risk"] == ["America/Toronto"] and cron["earliest_utc"] == "05:12:00"
    [warning] = report["warnings"]
    assert "runs at 01:00 UTC" in warning and "America/Toronto (2 subscriptions, from 05:12:00 UTC)" in warning
    assert "set its next execution after 05:12 UTC" in warning
    odoo = admin_client.get("/ops/health").json()["checks"]["odoo"]
    assert odoo["ok"] is False and odoo["config"]["invoicing_cron"]["at_risk"] == ["America/Toronto"]

    # BILLING_TIMEZONE counts even with no subscription yet (new customers without a timezone get it).
    settings.BILLING_TIMEZONE = "America/Los_Angeles"
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 06:00:00"})
    report = refresh_config_report(open_client(), force=True)
    assert report["invoicing_cron"]["at_risk"] == ["America/Los_Angeles"]  # 08:12 UTC in PST
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 08:30:00"})
    report = refresh_config_report(open_client(), force=True)
    assert report["warnings"] == [] and report["invoicing_cron"]["at_risk"] == []
    assert admin_client.get("/ops/health").json()["checks"]["odoo"]["ok"] is True
