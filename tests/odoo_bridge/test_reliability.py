"""Odoo down, lost responses, AccessDenied, concurrency, versions: the push converges with no duplicates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from odoo_bridge.models import ConnectionStatus, OdooConnectionState, OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.sync import push_cycle
from odoo_bridge.testing import FakeOdoo

from .conftest import point_settings_at

pytestmark = pytest.mark.django_db


def later(hours: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=hours)


def assert_no_duplicates(fake, subs, lines_per_sub):
    partners = fake.records("res.partner", [["ref", "=like", "fb-cus-%"]], ["ref"])
    assert len(partners) == len({p["ref"] for p in partners})
    orders = fake.records("sale.order", [], ["client_order_ref", "state", "order_line"])
    assert sorted(o["client_order_ref"] for o in orders) == sorted(f"fb-sub-{s.pk}" for s in subs)
    assert all(o["state"] == "sale" for o in orders)
    assert all(len(o["order_line"]) == lines_per_sub for o in orders), [o["order_line"] for o in orders]
    assert OdooSyncState.objects.exclude(status=SyncStatus.SYNCED).count() == 0


def test_odoo_down_for_a_while_then_everything_converges_without_duplicates(fake_odoo, catalog):
    subs = [catalog.subscription() for _ in range(4)]
    for sub in subs:
        catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
    fake_odoo.go_down()
    report = push_cycle()
    assert "unreachable" in report.aborted
    assert OdooConnectionState.objects.get().status == ConnectionStatus.DOWN
    fake_odoo.come_up()
    # Odoo answers again, but order creation hits a 502 from the proxy for a while
    fake_odoo.faults.add("http_status", model="sale.order", method="create", status=502, times=2)
    first = push_cycle()
    assert first.aborted and first.partners_created == 4
    failed = OdooSyncState.objects.filter(kind=SyncKind.SUBSCRIPTION, status=SyncStatus.FAILED)
    assert failed.count() == 4 and all(s.next_attempt_at > timezone.now() for s in failed)
    # not due yet: nothing is attempted
    fake_odoo.reset_counters()
    assert push_cycle().orders_created == 0
    assert fake_odoo.call_count(model="sale.order", method="create") == 0
    assert push_cycle(now=later(1)).aborted  # second 502
    assert push_cycle(now=later(3)).orders_created == 4
    assert_no_duplicates(fake_odoo, subs, lines_per_sub=2)
    assert OdooConnectionState.objects.get().status == ConnectionStatus.OK


@pytest.mark.parametrize("model", ["res.partner", "sale.order", "sale.order.line", "product.product"])
def test_lost_response_after_commit_never_duplicates(fake_odoo, catalog, model):
    subs = [catalog.subscription() for _ in range(2)]
    for sub in subs:
        catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
    if model == "sale.order.line":
        push_cycle()  # orders exist; the next usage line goes through sale.order.line.create
        for sub in subs:
            catalog.rate(sub, catalog.cpu_charge, units="100", amount="0.750000")
    fake_odoo.faults.add("lost_response", model=model, method="create")
    report = push_cycle()
    assert report.aborted
    for hours in (1, 2, 4):
        push_cycle(now=later(hours))
    lines = 3 if model == "sale.order.line" else 2
    assert_no_duplicates(fake_odoo, subs, lines_per_sub=lines)
    # the plan's recurring product, its base-fee product, two charges' usage products
    assert len(fake_odoo.records("product.product", [["default_code", "=like", "fb-%"]])) == 4


def test_lost_confirmation_is_repaired_by_confirming_the_draft(fake_odoo, catalog):
    subs = [catalog.subscription() for _ in range(2)]
    fake_odoo.faults.add("lost_response", model="sale.order", method="action_confirm")
    push_cycle()
    push_cycle(now=later(1))
    assert_no_duplicates(fake_odoo, subs, lines_per_sub=1)


def test_concurrency_error_is_retried_later(fake_odoo, catalog):
    subs = [catalog.subscription()]
    fake_odoo.faults.add("concurrency", model="sale.order", method="create")
    report = push_cycle()
    assert "could not serialize" in report.aborted
    row = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION)
    assert row.last_error_name == "psycopg2.errors.SerializationFailure" and row.attempts == 1
    push_cycle(now=later(1))
    assert_no_duplicates(fake_odoo, subs, lines_per_sub=1)


def test_access_denied_marks_connection_broken_and_causes_no_retry_storm(fake_odoo, catalog, settings):
    catalog.subscription()
    settings.ODOO_API_KEY = "wrong-key"
    for hours in range(6):
        report = push_cycle(now=later(hours))
        assert "access denied" in report.aborted or "broken" in report.aborted
    assert fake_odoo.failed_logins == 1  # one try, then silence: no login cooldown for the bot's IP
    state = OdooConnectionState.objects.get()
    assert state.status == ConnectionStatus.BROKEN and state.broken_at
    assert fake_odoo.records("sale.order") == []
    # fixing the key is a new credential set: it gets one fresh try and the push goes through
    settings.ODOO_API_KEY = fake_odoo.api_key
    assert push_cycle().orders_created == 1
    assert OdooConnectionState.objects.get().status == ConnectionStatus.OK


def test_key_revoked_mid_cycle_stops_at_the_first_access_denied(fake_odoo, catalog):
    for _ in range(3):
        catalog.subscription()
    push_cycle()
    for sub in catalog.service.subscriptions.all():
        catalog.rate(sub, catalog.api_charge, units="5", amount="0.100000")
    fake_odoo.revoke_api_key()
    report = push_cycle()
    assert "access denied" in report.aborted
    denied = fake_odoo.access_denied_count
    assert denied == 1
    for hours in range(1, 4):
        push_cycle(now=later(hours))
    assert fake_odoo.access_denied_count == denied and fake_odoo.failed_logins == 0


def test_business_error_in_a_batch_is_isolated_to_its_record(fake_odoo, catalog):
    good = catalog.subscription()
    bad = catalog.subscription()
    fake_odoo.faults.add("error", model="sale.order", method="create", name="odoo.exceptions.ValidationError",
                         message="The plan requires a recurring product", times=2,
                         predicate=lambda args, kwargs: any(v.get("client_order_ref") == f"fb-sub-{bad.pk}"
                                                            for v in (args[0] if isinstance(args[0], list)
                                                                      else [args[0]])))
    push_cycle()
    assert fake_odoo.records("sale.order", [], ["client_order_ref"])[0]["client_order_ref"] == f"fb-sub-{good.pk}"
    row = OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION, object_id=str(bad.pk))
    assert row.status == SyncStatus.FAILED and "recurring product" in row.last_error
    assert row.last_error_name == "odoo.exceptions.ValidationError"


def test_usage_of_a_refused_order_goes_with_the_orders_next_attempt(fake_odoo, catalog):
    """Never "failed" and forgotten: the order is refused once; its frozen usage line waits, then goes."""
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    fake_odoo.faults.add("error", model="sale.order", method="create", name="odoo.exceptions.ValidationError",
                         message="Try again", times=2)
    push_cycle()
    usage_row = OdooSyncState.objects.get(kind=SyncKind.USAGE)
    assert usage_row.status != SyncStatus.FAILED and "waiting for its order" in usage_row.last_error
    push_cycle(now=later(2))
    [line] = fake_odoo.records("sale.order.line", [["product_id.default_code", "=",
                                                    f"fb-charge-{catalog.api_charge.pk}"]], ["price_subtotal"])
    assert line["price_subtotal"] == 3.0
    assert OdooSyncState.objects.get(kind=SyncKind.USAGE).status == SyncStatus.SYNCED


@pytest.mark.parametrize("version,uom_field", [("17.0", "product_uom"), ("18.0", "product_uom"),
                                               ("19.0", "product_uom_id")])
def test_field_names_follow_the_odoo_version(settings, catalog, version, uom_field):
    with FakeOdoo(version=version) as server:
        point_settings_at(settings, server)
        sub = catalog.subscription()
        catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
        report = push_cycle()
        assert not report.aborted, report.aborted
        lines = server.records("sale.order.line", [], [uom_field, "price_unit"])
    assert len(lines) == 2 and all(ln[uom_field][1] == "Units" for ln in lines)
    assert OdooConnectionState.objects.get().line_uom_field == uom_field


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_push_cycles_do_not_duplicate(fake_odoo, catalog):
    import threading

    from django.db import connection

    subs = [catalog.subscription() for _ in range(30)]
    for sub in subs:
        catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
    fake_odoo.faults.add("latency", model="sale.order", method="create", seconds=0.3, times=None)
    reports = []

    def run():
        try:
            reports.append(push_cycle(batch_size=10))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(bool(r.aborted) for r in reports) == [False, True]  # the second saw the cycle lock
    push_cycle()
    assert_no_duplicates(fake_odoo, subs, lines_per_sub=2)


@pytest.mark.django_db(transaction=True)
def test_single_subscription_push_waits_for_its_lock(fake_odoo, catalog):
    from odoo_bridge.connection import ADVISORY_NAMESPACE_SUBSCRIPTION, advisory_locks

    sub = catalog.subscription()
    with advisory_locks(ADVISORY_NAMESPACE_SUBSCRIPTION, [str(sub.pk)]) as held:
        assert held == {str(sub.pk)}
        import threading

        from django.db import connection

        out = []

        def other():
            try:
                out.append(push_cycle(subscription_ids=[sub.pk]))
            finally:
                connection.close()

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert out[0].skipped_locked == 1 and fake_odoo.records("sale.order") == []
    assert push_cycle(subscription_ids=[sub.pk]).orders_created == 1
