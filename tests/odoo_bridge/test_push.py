"""Push to the fake Odoo over HTTP: mapping, exactly-once, shadow never billed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from odoo_bridge.models import OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.sync import push_cycle

pytestmark = pytest.mark.django_db


def test_live_subscription_becomes_confirmed_sale_order_with_recurring_line_at_price_zero(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    report = push_cycle()
    assert not report.aborted, report.aborted
    [partner] = fake_odoo.records("res.partner", [["ref", "=", f"fb-cus-{sub.account_link.customer_id}"]],
                                  ["name", "email", "country_id", "state_id", "commercial_partner_id"])
    assert partner["email"] == sub.account_link.customer.email
    assert partner["commercial_partner_id"][0] == partner["id"] and not partner["state_id"]
    # the account's own address is on its invoice contact under the commercial partner
    [contact] = fake_odoo.records("res.partner", [["ref", "=", f"fb-acct-{sub.account_link_id}"]],
                                  ["name", "type", "parent_id", "country_id", "state_id", "commercial_partner_id"])
    assert (contact["type"], contact["parent_id"][0], contact["commercial_partner_id"][0]) == (
        "invoice", partner["id"], partner["id"])
    assert contact["country_id"][1] == "Canada" and contact["state_id"][1] == "Ontario"
    assert contact["name"] == sub.account_link.name
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]],
                                ["partner_id", "partner_invoice_id", "partner_shipping_id", "plan_id", "state",
                                 "subscription_state", "order_line", "start_date"])
    assert order["partner_id"][0] == partner["id"] and order["plan_id"][1] == "Monthly"
    assert order["partner_invoice_id"][0] == order["partner_shipping_id"][0] == contact["id"]
    assert (order["state"], order["subscription_state"], order["start_date"]) == ("sale", "3_progress", "2026-11-01")
    lines = fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]]],
                              ["name", "price_unit", "product_uom_qty", "recurring_invoice"])
    # the plan's recurring product carries no money: the base fee arrives as PlanFee one-off lines
    assert [(ln["price_unit"], ln["product_uom_qty"], ln["recurring_invoice"]) for ln in lines] == [
        (0.0, 1.0, True), (0.02, 150.0, False)]
    sub.refresh_from_db()
    assert sub.odoo_sale_order_id == order["id"]
    usage_state = OdooSyncState.objects.get(kind=SyncKind.USAGE)
    assert usage_state.status == SyncStatus.SYNCED and usage_state.odoo_id == lines[1]["id"]
    assert not usage_state.pre_rated


def test_second_cycle_without_changes_sends_nothing_but_reads(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
    push_cycle()
    fake_odoo.reset_counters()
    report = push_cycle()
    assert report.records_written == 0
    assert fake_odoo.call_count(method="create") == 0 and fake_odoo.call_count(method="write") == 0


def test_open_window_never_reaches_odoo_and_its_frozen_amount_goes_once(fake_odoo, catalog):
    sub = catalog.subscription()
    usage = catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000", state="open")
    push_cycle()
    api_lines = [["product_id.default_code", "=", f"fb-charge-{catalog.api_charge.pk}"]]
    assert fake_odoo.records("sale.order.line", api_lines) == []  # invariant 1: open windows stay home
    catalog.rate(sub, catalog.api_charge, units="25", amount="0.500000", state="frozen")
    push_cycle()
    [line] = fake_odoo.records("sale.order.line", api_lines, ["product_uom_qty", "price_unit"])
    assert (line["product_uom_qty"], line["price_unit"]) == (25.0, 0.02)
    usage.refresh_from_db()
    assert usage.odoo_line_id == line["id"]
    assert OdooSyncState.objects.get(kind=SyncKind.USAGE).final


def test_line_of_the_old_model_not_yet_invoiced_is_written_to_the_frozen_amount(fake_odoo, catalog):
    """Old data: an open window's line was pushed before this change; its window freezes at another amount."""
    sub = catalog.subscription()
    usage = catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000")
    push_cycle()
    OdooSyncState.objects.filter(kind=SyncKind.USAGE).update(final=False)
    catalog.rate(sub, catalog.api_charge, units="0", amount="0")
    push_cycle()
    [line] = fake_odoo.records("sale.order.line", [["id", "=", usage.odoo_line_id or 0]] if usage.odoo_line_id
                               else [["product_id.default_code", "=", f"fb-charge-{catalog.api_charge.pk}"]],
                               ["product_uom_qty", "price_unit"])
    assert (line["product_uom_qty"], line["price_unit"]) == (0.0, 0.0)  # Odoo forbids deleting it: zeroed


def test_zero_amount_creates_no_line(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="0", amount="0")
    push_cycle()
    order = fake_odoo.records("sale.order", [], ["order_line"])[0]
    assert len(order["order_line"]) == 1  # the recurring line only
    assert OdooSyncState.objects.get(kind=SyncKind.USAGE).status == SyncStatus.SYNCED


def test_sub_cent_rate_is_pushed_as_quantity_one_at_the_pre_rated_amount(fake_odoo, catalog, admin_client):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
    push_cycle()
    [line] = fake_odoo.records("sale.order.line", [["product_id.default_code", "=",
                                                    f"fb-charge-{catalog.cpu_charge.pk}"]],
                               ["product_uom_qty", "price_unit", "price_subtotal"])
    assert (line["product_uom_qty"], line["price_unit"]) == (1.0, 9.26)
    state = OdooSyncState.objects.get(kind=SyncKind.USAGE)
    assert state.pre_rated and "price digits" in state.pricing_note
    page = admin_client.get("/admin/odoo_bridge/odoosyncstate/?pre_rated__exact=1")
    assert page.status_code == 200 and "price digits" in page.content.decode()


def test_rate_kept_when_odoo_has_enough_price_digits(settings, catalog):
    from odoo_bridge.testing import FakeOdoo

    from .conftest import point_settings_at

    with FakeOdoo(price_digits=4) as server:
        point_settings_at(settings, server)
        sub = catalog.subscription()
        catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
        push_cycle()
        [line] = server.records("sale.order.line", [["product_id.default_code", "=",
                                                     f"fb-charge-{catalog.cpu_charge.pk}"]],
                                ["product_uom_qty", "price_unit"])
    assert (line["product_uom_qty"], line["price_unit"]) == (1234.0, 0.0075)
    assert not OdooSyncState.objects.get(kind=SyncKind.USAGE).pre_rated


def test_shadow_subscriptions_are_never_pushed(fake_odoo, catalog):
    shadow = catalog.subscription(mode="shadow")
    catalog.rate(shadow, catalog.api_charge, units="10", amount="0.200000")
    report = push_cycle()
    assert report.subscriptions_seen == 0
    assert fake_odoo.records("sale.order") == []
    assert fake_odoo.records("sale.order.line") == []


def test_shadow_subscription_customers_get_a_partner_for_go_live(fake_odoo, catalog):
    """A partner bills nothing; go-live's preflight needs it before the flip."""
    shadow = catalog.subscription(mode="shadow")
    push_cycle()
    push_cycle()
    customer = shadow.account_link.customer
    customer.refresh_from_db()
    partners = fake_odoo.records("res.partner", [["ref", "=like", "fb-cus-%"]])
    assert len(partners) == 1 and customer.odoo_partner_id == partners[0]["id"]
    assert fake_odoo.records("sale.order") == []


def test_terminated_subscription_is_closed_in_odoo(fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle()
    sub.status = "terminated"
    sub.terminated_at = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    sub.save()
    push_cycle()
    [order] = fake_odoo.records("sale.order", [], ["subscription_state", "close_reason_id"])
    assert order["subscription_state"] == "6_churn" and order["close_reason_id"]
    fake_odoo.reset_counters()
    push_cycle()
    assert fake_odoo.call_count(method="set_close") == 0


def test_one_partner_per_customer_across_subscriptions(fake_odoo, catalog):
    customer = catalog.customer()
    catalog.subscription(customer=customer)
    catalog.subscription(customer=customer)
    push_cycle()
    assert len(fake_odoo.records("res.partner", [["ref", "=like", "fb-cus-%"]])) == 1
    assert len(fake_odoo.records("sale.order")) == 2


def test_customer_change_is_written_to_the_partner(fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle()
    customer = sub.account_link.customer
    customer.email = "new@example.test"
    customer.save()
    push_cycle()
    [partner] = fake_odoo.records("res.partner", [["ref", "=like", "fb-cus-%"]], ["email"])
    assert partner["email"] == "new@example.test"


def test_changes_are_found_whatever_clock_rating_used(fake_odoo, catalog):
    from metering.models import RatedUsage
    from odoo_bridge.sync import _not_pushed_final

    sub = catalog.subscription()
    usage = catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000", state="open")
    push_cycle()
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    # the window closes with a last change in the same statement: pushed, then never looked at again
    RatedUsage.objects.filter(pk=usage.pk).update(units=50, billable_units=50, amount=Decimal("1.0"),
                                                  state="frozen", rated_at=long_ago)
    push_cycle()
    [line] = fake_odoo.records("sale.order.line", [["product_id.default_code", "=",
                                                    f"fb-charge-{catalog.api_charge.pk}"]], ["product_uom_qty"])
    assert line["product_uom_qty"] == 50.0
    state = OdooSyncState.objects.get(kind=SyncKind.USAGE)
    assert state.final and state.status == SyncStatus.SYNCED
    assert not RatedUsage.objects.filter(pk=usage.pk).filter(_not_pushed_final(SyncKind.USAGE)).exists()


def test_terminated_via_queryset_update_is_still_closed(fake_odoo, catalog):
    from metering.models import Subscription

    sub = catalog.subscription()
    push_cycle()
    Subscription.objects.filter(pk=sub.pk).update(status="terminated")
    push_cycle()
    assert fake_odoo.records("sale.order", [], ["subscription_state"])[0]["subscription_state"] == "6_churn"
    assert OdooSyncState.objects.get(kind=SyncKind.SUBSCRIPTION).final
    assert push_cycle().subscriptions_seen == 0
