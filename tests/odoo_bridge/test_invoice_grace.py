"""The invoice grace period in Odoo (issue #12): the order's ``next_invoice_date`` is the day of
the window's end + the subscription's own grace (service's or customer's), so Odoo's cron never
invoices a window before it froze and was pushed; the invoicing-time check takes the worst grace
of each billing timezone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering import tasks
from metering.models import Subscription
from odoo_bridge.sync import push_cycle

from .conftest import UTC

pytestmark = pytest.mark.django_db


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def put_grace(client, days: int | None) -> None:
    response = client.put("/api/v1/organizations", {"organization": {
        "billing_configuration": {"invoice_grace_period": days}}}, format="json")
    assert response.status_code == 200, response.content


def order_of(fake_odoo, lago_id) -> dict:
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{lago_id}"]],
                                ["id", "next_invoice_date"])
    return order


def test_late_event_in_the_grace_is_on_the_windows_invoice_dated_end_plus_grace(
        fake_odoo, api_client, monkeypatch, settings):
    """Grace 2 days. Calendar monthly 30.00 in arrears + 1.00 a call, started Nov 15: window
    [Nov 15, Dec 1), next_invoice_date Dec 3. A counter stamped Nov 30 sent on Dec 2 is taken; Odoo's
    runs of Dec 1 and 2 invoice nothing; November freezes on Dec 3 00:00 and Odoo's run of Dec 3 bills
    2 calls + 16/30 of 30.00 = 18.00 on one invoice."""
    from django.utils import timezone

    clock = {"now": at(2026, 11, 15)}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    settings.RATING_SHARDS, settings.RATING_GRACE_SECONDS = 1, 0
    put_grace(api_client, 2)
    metric = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "calls", "code": "calls", "aggregation_type": "count_agg"}}, format="json").json()
    assert api_client.post("/api/v1/plans", {"plan": {
        "name": "basic", "code": "basic", "interval": "monthly", "amount_cents": 3000, "amount_currency": "CAD",
        "pay_in_advance": False, "charges": [{"billable_metric_id": metric["billable_metric"]["lago_id"],
                                              "charge_model": "standard", "properties": {"amount": "1"}}],
    }}, format="json").status_code == 200
    assert api_client.post("/api/v1/customers", {"customer": {
        "external_id": "cus_1", "name": "Acme", "email": "ap@acme.test", "currency": "CAD", "country": "CA",
        "state": "ON"}}, format="json").status_code == 200
    lago_id = api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_1", "plan_code": "basic", "external_id": "sub_1"}},
        format="json").json()["subscription"]["lago_id"]

    def event(stamped: dt.datetime, tx: str):
        return api_client.post("/api/v1/events", {"event": {
            "transaction_id": tx, "external_subscription_id": "sub_1", "code": "calls",
            "timestamp": int(stamped.timestamp())}}, format="json")

    def run(now: dt.datetime) -> None:  # beat: rate, then push
        clock["now"] = now
        tasks.rate_open_windows()
        assert not push_cycle(now=now).aborted

    assert event(at(2026, 11, 20), "tx-1").status_code == 200
    run(at(2026, 11, 15, 0, 5))
    order = order_of(fake_odoo, lago_id)
    assert order["next_invoice_date"] == "2026-12-03"
    for day in (1, 2):
        run(at(2026, 12, day, 0, 5))
        fake_odoo.store.clock = lambda day=day: at(2026, 12, day, 9)
        assert fake_odoo.run_invoicing_cron(today=dt.date(2026, 12, day)) == []
        if day == 2:  # one day after the end: the late counter is still November's
            assert event(at(2026, 11, 30, 23, 30), "tx-late").status_code == 200
    run(at(2026, 12, 3, 0, 5))
    fake_odoo.store.clock = lambda: at(2026, 12, 3, 9)
    assert len(fake_odoo.run_invoicing_cron(today=dt.date(2026, 12, 3))) == 1
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("18.00")]
    clock["now"] = at(2026, 12, 4)  # three days after the end
    response = event(at(2026, 11, 30, 23, 45), "tx-too-late")
    assert response.status_code == 422 and response.json()["error_details"] == {"timestamp": ["period_closed"]}


def test_next_invoice_date_moves_with_the_service_and_customer_grace(fake_odoo, catalog, api_client, settings):
    settings.RATING_GRACE_SECONDS = 0
    sub = catalog.subscription()  # window [Nov 1, Dec 1)
    push_cycle(now=at(2026, 11, 2))
    assert order_of(fake_odoo, sub.pk)["next_invoice_date"] == "2026-12-01"
    put_grace(api_client, 2)  # the organization's: the subscription takes it, the change log marks it
    assert Subscription.objects.get(pk=sub.pk).grace_period == dt.timedelta(days=2)
    assert push_cycle(now=at(2026, 11, 2)).subscriptions_seen == 1
    assert order_of(fake_odoo, sub.pk)["next_invoice_date"] == "2026-12-03"
    # The customer's own beats it.
    response = api_client.post("/api/v1/customers", {"customer": {
        "external_id": sub.account_link.external_id, "billing_configuration": {"invoice_grace_period": 5}}},
        format="json")
    assert response.status_code == 200, response.content
    push_cycle(now=at(2026, 11, 2))
    assert order_of(fake_odoo, sub.pk)["next_invoice_date"] == "2026-12-06"
    # The organization's change no longer reaches an account with its own grace.
    put_grace(api_client, 1)
    assert push_cycle(now=at(2026, 11, 2)).subscriptions_seen == 0
    assert order_of(fake_odoo, sub.pk)["next_invoice_date"] == "2026-12-06"


def test_invoicing_time_check_takes_the_worst_grace_of_each_timezone(
        fake_odoo, catalog, service, other_service, admin_client, settings):
    """Deployment default 600 s, sync 60 s. Whole days of grace move the invoicing date with the close,
    so a Toronto window closing at 05:00 UTC with a 2-day grace is in Odoo at 05:02 UTC of its invoicing
    date; on the default 600 s at 05:12. With only the 2-day service's subscriptions in Toronto, a cron at
    05:05 UTC is safe; a Toronto subscription of another service on the default makes it too early."""
    from metering.models import Subscription
    from odoo_bridge.connection import open_client, refresh_config_report

    settings.RATING_GRACE_SECONDS, settings.ODOO_SYNC_INTERVAL_SECONDS = 600, 60
    settings.OPS_HEALTH_CACHE_SECONDS = 0
    service.invoice_grace_period = 2
    service.save()
    toronto = catalog.subscription()
    Subscription.objects.filter(pk=toronto.pk).update(billing_timezone="America/Toronto",
                                                      grace_period=dt.timedelta(days=2))
    cron_id = fake_odoo.store.xmlid_id("sale_subscription", "account_analytic_cron_for_invoice")
    fake_odoo.store.write("ir.cron", [cron_id], {"nextcall": "2026-12-02 05:05:00"})
    fake_odoo.store.write("decimal.precision", [fake_odoo.store.xmlid_id("product", "decimal_price")], {"digits": 4})
    cron = refresh_config_report(open_client(), force=True)["invoicing_cron"]
    assert cron["timezones"] == [
        {"timezone": "America/Toronto", "subscriptions": 1, "earliest_utc": "05:02:00", "at_risk": False,
         "grace_seconds": 2 * 86400},
        # new subscriptions without a timezone may take the default or the service's grace: the worst
        {"timezone": "UTC", "subscriptions": 0, "earliest_utc": "00:12:00", "at_risk": False,
         "grace_seconds": 600}]
    assert cron["at_risk"] == []

    other = catalog.subscription(account=catalog.account(service=other_service))
    Subscription.objects.filter(pk=other.pk).update(service=other_service, billing_timezone="America/Toronto")
    report = refresh_config_report(open_client(), force=True)
    [row] = [z for z in report["invoicing_cron"]["timezones"] if z["timezone"] == "America/Toronto"]
    assert row == {"timezone": "America/Toronto", "subscriptions": 2, "earliest_utc": "05:12:00", "at_risk": True,
                   "grace_seconds": 600}
    odoo = admin_client.get("/ops/health").json()["checks"]["odoo"]
    assert odoo["ok"] is False and odoo["config"]["invoicing_cron"]["at_risk"] == ["America/Toronto"]
    assert {"timezone": "America/Toronto", "subscriptions": 2, "earliest_utc": "05:12:00", "at_risk": True,
            "grace_seconds": 600} in odoo["config"]["invoicing_cron"]["timezones"]
