"""The change-driven push: a cycle examines only what changed since the last one.

Triggers append the subscriptions a change concerns to the change log in the change's own
transaction; a cycle takes them in chunks within its budget; retries requeue themselves;
the full sweep is the safety net; cycles never overlap.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from metering.models import PlanFee, RatedUsage, Subscription
from odoo_bridge import sync
from odoo_bridge.connection import ADVISORY_NAMESPACE_CYCLE
from odoo_bridge.models import OdooPushChange, OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.sync import push_cycle, resync

pytestmark = pytest.mark.django_db


def order_of(fake_odoo, sub, fields=("state", "subscription_state")):
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]], list(fields))
    return order


def usage_lines(fake_odoo, sub):
    order = order_of(fake_odoo, sub)
    return fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]], ["recurring_invoice", "=", False]],
                             ["name", "product_uom_qty", "price_unit"])


def pushed(fake_odoo, catalog, n=3):
    """``n`` live subscriptions pushed with one frozen usage window each; the log is empty after."""
    subs = [catalog.subscription() for _ in range(n)]
    for i, sub in enumerate(subs):
        catalog.rate(sub, catalog.api_charge, units=str(100 + i), amount=str(Decimal(100 + i) * Decimal("0.02")))
    report = push_cycle()
    assert not report.aborted and report.orders_created == n
    assert not OdooPushChange.objects.exists()
    fake_odoo.reset_counters()
    return subs


def test_unchanged_cycle_makes_no_rpc_and_loads_no_subscription(fake_odoo, catalog):
    pushed(fake_odoo, catalog, n=4)
    with CaptureQueriesContext(connection) as queries:
        report = push_cycle()
    assert not report.aborted
    assert (report.subscriptions_seen, report.changes_taken, report.round_trips) == (0, 0, 0)
    assert fake_odoo.call_count() == 0
    # no statement reads the subscriptions, their usage or their sync state (the partner check of shadow
    # subscriptions reads customers)
    tables = ('FROM "metering_subscription"', 'FROM "metering_ratedusage"', 'FROM "odoo_bridge_odoosyncstate"')
    main_tables = [q["sql"].split(" WHERE ")[0] for q in queries.captured_queries]
    assert not [sql for sql in main_tables if any(t in sql for t in tables)]


def test_customer_profile_edit_through_the_api_pushes_that_account_only(fake_odoo, catalog, api_client):
    subs = pushed(fake_odoo, catalog)
    link = subs[1].account_link
    response = api_client.post("/api/v1/customers", {"customer": {"external_id": link.external_id,
                                                                  "name": "Renamed Inc"}}, format="json")
    assert response.status_code == 200, response.content
    assert list(OdooPushChange.objects.values_list("subscription_id", "reason")) == [
        (subs[1].pk, "identity_accountlink")]
    report = push_cycle()
    assert (report.subscriptions_seen, report.contacts_updated) == (1, 1)
    [contact] = fake_odoo.records("res.partner", [["ref", "=", f"fb-acct-{link.pk}"]], ["name"])
    assert contact["name"] == "Renamed Inc"
    assert not OdooPushChange.objects.exists()


def test_plan_label_edit_through_the_api_pushes_the_subscriptions_of_the_plan(fake_odoo, catalog, api_client):
    subs = pushed(fake_odoo, catalog)
    response = api_client.put("/api/v1/plans/pro", {"plan": {"invoice_display_name": "Pro (2027)"}}, format="json")
    assert response.status_code == 200, response.content
    report = push_cycle()
    assert report.subscriptions_seen == len(subs)
    [product] = fake_odoo.records("product.product", [["default_code", "=", f"fb-plan-{catalog.plan.pk}"]],
                                  ["name"])
    assert product["name"] == "Pro (2027)"


def test_metric_label_edit_through_the_api_renames_the_usage_product(fake_odoo, catalog, api_client):
    subs = pushed(fake_odoo, catalog)
    response = api_client.put("/api/v1/billable_metrics/api_calls",
                              {"billable_metric": {"name": "API requests"}}, format="json")
    assert response.status_code == 200, response.content
    assert set(OdooPushChange.objects.values_list("subscription_id", flat=True)) == {s.pk for s in subs}
    push_cycle()
    [product] = fake_odoo.records("product.product", [["default_code", "=", f"fb-charge-{catalog.api_charge.pk}"]],
                                  ["name"])
    assert product["name"] == "API requests"


def test_frozen_window_and_plan_fee_are_pushed_by_the_next_cycle(fake_odoo, catalog):
    subs = pushed(fake_odoo, catalog)
    open_usage = catalog.rate(subs[0], catalog.cpu_charge, units="40", amount="0.300000", state="open")
    assert push_cycle().subscriptions_seen == 0  # an open window changes nothing Odoo holds
    open_usage.state = "frozen"  # rating freezes the window
    open_usage.save()
    catalog.fee(subs[2], amount="49.00")
    report = push_cycle()
    assert (report.subscriptions_seen, report.lines_created) == (2, 2)
    assert [round(ln["product_uom_qty"] * ln["price_unit"], 2) for ln in usage_lines(fake_odoo, subs[0])] == [
        2.0, 0.3]
    assert any(ln["price_unit"] == 49.0 for ln in usage_lines(fake_odoo, subs[2]))


def test_subscription_termination_through_the_api_closes_its_order(fake_odoo, catalog, api_client):
    subs = pushed(fake_odoo, catalog)
    sub = subs[0]
    response = api_client.delete(f"/api/v1/subscriptions/{sub.external_id}")
    assert response.status_code == 200, response.content
    assert OdooPushChange.objects.filter(subscription_id=sub.pk).exists()
    call_command("rate_usage", subscription=sub.external_id)  # the final window freezes (beat does it)
    push_cycle()
    push_cycle()  # anything the first left unsettled (invoice posted, then closed)
    assert order_of(fake_odoo, sub)["subscription_state"] == "6_churn"
    assert all(order_of(fake_odoo, s)["subscription_state"] == "3_progress" for s in subs[1:])


def test_shadow_subscription_going_live_is_pushed(fake_odoo, catalog):
    sub = catalog.subscription(mode="shadow")
    push_cycle()
    assert not fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]], ["id"])
    Subscription.objects.filter(pk=sub.pk).update(mode="live")  # go-live
    assert push_cycle().orders_created == 1


def test_failed_rows_are_retried_after_their_backoff_not_before(fake_odoo, catalog):
    sub = catalog.subscription()
    fake_odoo.faults.add("http_status", model="sale.order", method="create", status=502, times=1)
    first = push_cycle()
    assert first.aborted
    [row] = OdooPushChange.objects.filter(subscription_id=sub.pk)
    state = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION)
    assert state.status == SyncStatus.FAILED and row.reason == "retry" and row.due_at == state.next_attempt_at
    fake_odoo.reset_counters()
    assert push_cycle().subscriptions_seen == 0 and fake_odoo.call_count() == 0  # not due yet
    report = push_cycle(now=timezone.now() + dt.timedelta(hours=2))
    assert report.orders_created == 1 and not OdooPushChange.objects.exists()


def test_business_error_requeues_until_retries_are_given_up_then_resync_brings_it_back(fake_odoo, catalog, settings):
    settings.ODOO_MAX_ATTEMPTS_ON_REMOTE_ERROR = 1
    sub = catalog.subscription()
    fake_odoo.faults.add("error", model="sale.order", method="create", times=2)
    push_cycle()
    state = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION)
    assert state.status == SyncStatus.FAILED and state.next_attempt_at is None
    assert not OdooPushChange.objects.exists()  # given up: nothing is retried by itself
    resync(OdooSyncState.objects.filter(kind=SyncKind.SUBSCRIPTION))  # the admin's action
    assert list(OdooPushChange.objects.values_list("subscription_id", "reason")) == [(sub.pk, "resync")]
    assert push_cycle().orders_created == 1


def test_full_sweep_pushes_a_change_the_log_missed(fake_odoo, catalog):
    subs = pushed(fake_odoo, catalog)
    catalog.fee(subs[1], amount="49.00")
    OdooPushChange.objects.all().delete()  # as if a writer had bypassed the triggers
    assert push_cycle().subscriptions_seen == 0
    call_command("odoo_sync", "--full")
    assert any(ln["price_unit"] == 49.0 for ln in usage_lines(fake_odoo, subs[1]))
    assert PlanFee.objects.get(subscription=subs[1]).odoo_line_id


def test_changed_usage_lines_cost_two_rpcs_per_batch_whatever_their_count(fake_odoo, catalog):
    subs = pushed(fake_odoo, catalog, n=6)
    for i, sub in enumerate(subs):
        catalog.rate(sub, catalog.api_charge, units=str(200 + i), amount=str(Decimal(200 + i) * Decimal("0.02")))
    resync(OdooSyncState.objects.filter(kind=SyncKind.USAGE))  # re-rated after the push: ops resync them
    report = push_cycle()
    assert report.lines_updated == 6
    assert fake_odoo.call_count(model="sale.order.line", method="load") == 1
    assert fake_odoo.call_count(method="write") == 0
    assert fake_odoo.call_count() == 2  # the lines' search_read and one load
    assert [ln["product_uom_qty"] for s in subs for ln in usage_lines(fake_odoo, s)] == [
        float(200 + i) for i in range(6)]


def test_refused_load_falls_back_to_one_write_per_line(fake_odoo, catalog):
    subs = pushed(fake_odoo, catalog, n=2)
    for sub in subs:
        catalog.rate(sub, catalog.api_charge, units="7", amount="0.140000")
    resync(OdooSyncState.objects.filter(kind=SyncKind.USAGE))
    fake_odoo.faults.add("error", model="sale.order.line", method="load", times=1)
    report = push_cycle()
    assert report.lines_updated == 2 and fake_odoo.call_count(model="sale.order.line", method="write") == 2
    assert [ln["product_uom_qty"] for s in subs for ln in usage_lines(fake_odoo, s)] == [7.0, 7.0]


def test_budget_leaves_the_rest_for_the_next_cycle(fake_odoo, catalog, monkeypatch):
    subs = [catalog.subscription() for _ in range(3)]
    clock = itertools.count(0, 10)  # every look at the clock: 10 s later
    monkeypatch.setattr(sync.time, "monotonic", lambda: float(next(clock)))  # ok-float: clock
    first = push_cycle(batch_size=1, budget_seconds=15)
    assert first.budget_exhausted and first.orders_created == 1
    assert OdooPushChange.objects.values("subscription_id").distinct().count() == 2
    second = push_cycle(batch_size=1, budget_seconds=25)
    assert second.orders_created == 2 and not second.budget_exhausted
    assert not OdooPushChange.objects.exists()
    assert all(order_of(fake_odoo, s)["state"] == "sale" for s in subs)


@pytest.mark.django_db(transaction=True)
def test_a_second_cycle_is_refused_while_one_runs(fake_odoo, catalog):
    catalog.subscription()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")
                            and v}, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext('push'))", [ADVISORY_NAMESPACE_CYCLE])
        report = push_cycle()
        assert report.aborted == "another push cycle is running"
        assert fake_odoo.call_count(model="sale.order", method="create") == 0
        assert OdooPushChange.objects.exists()  # left for the cycle that holds the lock, or the next
        other.execute("SELECT pg_advisory_unlock(%s, hashtext('push'))", [ADVISORY_NAMESPACE_CYCLE])
    assert push_cycle().orders_created == 1


def test_orders_whose_dates_agree_are_redated_by_one_write(fake_odoo, catalog):
    subs = pushed(fake_odoo, catalog)
    orders = [order_of(fake_odoo, s, ("next_invoice_date",)) for s in subs]
    assert {o["next_invoice_date"] for o in orders} == {"2026-12-01"}
    fake_odoo.store.write("sale.order", [o["id"] for o in orders], {"next_invoice_date": "2026-12-15"})  # Odoo's
    report = push_cycle(full=True, now=timezone.now() + dt.timedelta(days=1))  # the next day's sweep
    assert report.orders_dated == 3
    assert fake_odoo.call_count(model="sale.order", method="write") == 1
    assert {order_of(fake_odoo, s, ("next_invoice_date",))["next_invoice_date"] for s in subs} == {"2026-12-01"}


def test_a_changed_cycle_runs_as_many_queries_for_six_subscriptions_as_for_two(fake_odoo, catalog):
    """O(batches), not O(subscriptions): e.g. the account's label (its service) used to cost a query per account."""
    subs = pushed(fake_odoo, catalog, n=6)

    def changed_cycle_queries(changed, units):
        for i, sub in enumerate(changed):
            catalog.rate(sub, catalog.api_charge, units=str(units + i), amount=str(Decimal(units + i) * Decimal("0.02")))
        resync(OdooSyncState.objects.filter(kind=SyncKind.USAGE, object_id__in=[
            str(pk) for pk in RatedUsage.objects.filter(subscription__in=changed).values_list("pk", flat=True)]))
        with CaptureQueriesContext(connection) as queries:
            report = push_cycle()
        assert (report.subscriptions_seen, report.lines_updated, report.aborted) == (len(changed), len(changed), "")
        return len(queries.captured_queries)

    assert changed_cycle_queries(subs[:2], 300) == changed_cycle_queries(subs, 400)
    assert [ln["product_uom_qty"] for ln in usage_lines(fake_odoo, subs[5])] == [405.0]
