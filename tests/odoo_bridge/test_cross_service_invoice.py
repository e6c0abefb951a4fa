"""#17 (Low): an Odoo invoice whose lines come from two services' orders.

Odoo groups the invoicing wizard's invoices by invoice address (sale `_get_invoice_grouping_keys`), so
when ops point one service's order at another service's invoice contact and invoice both orders at once,
Odoo makes ONE invoice of both. No service may see the other's lines or amounts: the pull attributes
each line to the account of its order (`sale_line_ids` -> order), holds the invoice from the API and
webhooks, and flags it for ops; once ops reverse it and invoice each service on its own, each service
gets its own invoice and nothing is billed twice.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import odoorpc
import pytest

from billing_project import health
from metering.models import RatedUsage
from odoo_bridge.models import CreditNote, Invoice, OdooSyncState, SyncKind
from odoo_bridge.pull import announce_overdue_invoices, pull_invoices
from odoo_bridge.selectors import billed_totals
from odoo_bridge.sync import push_cycle
from tests.odoo_bridge.conftest import Catalog
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def events() -> list[dict]:
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.order_by("created_at")]


@pytest.fixture
def two_services(fake_odoo, catalog, other_service):
    """One client (one email, one commercial partner) billed by nexacloud and by nexadesk."""
    desk = Catalog(other_service)
    customer = catalog.customer(email="jane@shared.test")
    cloud_sub = catalog.subscription(account=catalog.account(customer=customer, name="Jane Cloud"))
    desk_sub = desk.subscription(account=desk.account(customer=customer, name="Jane Desk"))
    catalog.rate(cloud_sub, catalog.api_charge, units="100", amount="2.000000")
    catalog.fee(cloud_sub, amount="49.000000")
    desk.rate(desk_sub, desk.api_charge, units="250", amount="5.000000")
    desk.fee(desk_sub, amount="19.000000")
    report = push_cycle()
    assert not report.aborted, report.aborted
    cloud_sub.refresh_from_db()
    desk_sub.refresh_from_db()
    return cloud_sub, desk_sub


@pytest.fixture
def rpc(fake_odoo):
    odoo = odoorpc.ODOO("127.0.0.1", port=fake_odoo.port, timeout=5)
    odoo.login(fake_odoo.db, fake_odoo.login, fake_odoo.api_key)
    return odoo


def invoice_orders(rpc, fake_odoo, order_ids: list[int]) -> list[int]:
    """Ops in Odoo: Sales -> select the orders -> Create invoice (consolidated), then Confirm each."""
    ctx = {"active_model": "sale.order", "active_ids": order_ids}
    wizard = rpc.execute_kw("sale.advance.payment.inv", "create",
                            [{"advance_payment_method": "delivered", "consolidated_billing": True,
                              "sale_order_ids": [[6, 0, order_ids]]}], {"context": ctx})
    action = rpc.execute_kw("sale.advance.payment.inv", "create_invoices", [[wizard]], {"context": ctx})
    move_ids = [action["res_id"]] if action.get("res_id") else [leaf[2] for leaf in action["domain"]][0]
    for move_id in move_ids:
        rpc.execute_kw("account.move", "action_post", [[move_id]])
    return move_ids


def point_order_at(rpc, order_id: int, contact_id: int) -> None:
    rpc.execute_kw("sale.order", "write", [[order_id], {"partner_invoice_id": contact_id,
                                                        "partner_shipping_id": contact_id}])


def test_an_invoice_of_two_services_orders_is_shown_to_neither_and_flagged_for_ops(
        fake_odoo, rpc, two_services, api_client, other_api_client, admin_client, settings):
    cloud_sub, desk_sub = two_services
    cloud_contact = cloud_sub.account_link.odoo_invoice_partner_id
    # ops point nexadesk's order at nexacloud's invoice contact: Odoo's grouping now merges both orders
    point_order_at(rpc, desk_sub.odoo_sale_order_id, cloud_contact)
    [move_id] = invoice_orders(rpc, fake_odoo, [cloud_sub.odoo_sale_order_id, desk_sub.odoo_sale_order_id])
    orders = {line["subscription_id"][0] for line in fake_odoo.records(
        "account.move.line", [["move_id", "=", move_id]], ["subscription_id"])}
    assert orders == {cloud_sub.odoo_sale_order_id, desk_sub.odoo_sale_order_id}  # really one invoice of both

    report = pull_invoices()
    assert (report.invoices_created, report.held, report.events) == (1, 1, 0)
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert invoice.held_reason == "lines of 2 service accounts (nexacloud:{}, nexadesk:{})".format(
        cloud_sub.account_link.external_id, desk_sub.account_link.external_id)
    # each line belongs to the subscription of the order it was invoiced from
    by_sub: dict = {}
    for line in invoice.lines.all():
        by_sub.setdefault(line.subscription_id, Decimal(0))
        by_sub[line.subscription_id] += line.amount
    assert by_sub == {cloud_sub.pk: Decimal("51.00"), desk_sub.pk: Decimal("24.00")}
    assert invoice.fees_amount == Decimal("75.00")
    # money is counted once, on the right subscription
    assert billed_totals(cloud_sub).untaxed == Decimal("51.00") and billed_totals(desk_sub).untaxed == Decimal("24.00")
    assert billed_totals(desk_sub).usage == Decimal("5.00")
    # both services' usage lines are invoiced in Odoo: frozen for the push, whichever account they belong to
    usage_ids = {str(u.pk) for u in RatedUsage.objects.filter(subscription__in=[cloud_sub, desk_sub])}
    assert set(OdooSyncState.objects.filter(kind=SyncKind.USAGE, frozen=True).values_list("object_id", flat=True)
               ) == usage_ids

    # neither service hears of it nor reads it, by any route
    assert events() == []
    for client, sub in ((api_client, cloud_sub), (other_api_client, desk_sub)):
        assert client.get("/api/v1/invoices").json()["invoices"] == []
        external = sub.account_link.external_id
        assert client.get("/api/v1/invoices", {"external_customer_id": external}).json()["invoices"] == []
        assert client.get(f"/api/v1/customers/{external}/invoices").json()["invoices"] == []
        missing = client.get(f"/api/v1/invoices/{invoice.pk}")
        assert missing.status_code == 404 and missing.json()["code"] == "invoice_not_found"
    # ... and no overdue notice later either
    assert announce_overdue_invoices(now=dt.datetime(2027, 6, 1, tzinfo=dt.timezone.utc)) == 0

    # ops see it: /ops/health and the admin's "held" filter
    settings.OPS_HEALTH_CACHE_SECONDS = 0
    health.clear_cache()
    held = admin_client.get("/ops/health").json()["checks"]["held_invoices"]
    assert held["ok"] is False and held["count"] == 1
    assert held["invoices"] == [{"odoo_move_id": move_id, "number": invoice.number,
                                 "held_reason": invoice.held_reason}]
    page = admin_client.get("/admin/odoo_bridge/invoice/", {"held": "yes"})
    assert page.status_code == 200 and invoice.number in page.content.decode()
    assert invoice.number not in admin_client.get("/admin/odoo_bridge/invoice/", {"held": "no"}).content.decode()

    # ops fix it in Odoo: reverse the merged invoice, restore nexadesk's address, invoice each service again
    refund_id = fake_odoo.reverse_invoice(move_id)
    point_order_at(rpc, desk_sub.odoo_sale_order_id, desk_sub.account_link.odoo_invoice_partner_id)
    new_moves = invoice_orders(rpc, fake_odoo, [cloud_sub.odoo_sale_order_id, desk_sub.odoo_sale_order_id])
    assert len(new_moves) == 2
    report = pull_invoices()
    assert (report.invoices_created, report.credit_notes_created) == (2, 1)  # the two invoices, the credit note
    refund = CreditNote.objects.get(odoo_move_id=refund_id)
    assert refund.held_reason and Invoice.objects.get(odoo_move_id=move_id).status == "voided"
    assert not Invoice.objects.filter(odoo_move_id=refund_id).exists()
    # a held invoice's credit note reaches no service either
    assert api_client.get("/api/v1/credit_notes").json()["credit_notes"] == []
    assert other_api_client.get(f"/api/v1/credit_notes/{refund.pk}").status_code == 404
    health.clear_cache()
    assert admin_client.get("/ops/health").json()["checks"]["held_invoices"] == {
        "ok": True, "count": 0, "invoices": []}

    # each service now gets its own invoice, with only its own lines, and hears of nothing else
    sent = events()
    assert sorted(e["webhook_type"] for e in sent) == ["invoice.created", "invoice.created", "invoice.generated",
                                                       "invoice.generated"]
    for client, sub, cents in ((api_client, cloud_sub, 5100), (other_api_client, desk_sub, 2400)):
        [listed] = client.get("/api/v1/invoices").json()["invoices"]
        assert listed["total_amount_cents"] == cents
        assert {fee["external_subscription_id"] for fee in listed["fees"]} == {sub.external_id}
        assert listed["customer"]["external_id"] == sub.account_link.external_id
        [event] = [e for e in sent if e["invoice"]["lago_id"] == listed["lago_id"]
                   and e["webhook_type"] == "invoice.created"]
        assert event["invoice"]["fees_amount_cents"] == cents
        assert {fee["external_subscription_id"] for fee in event["invoice"]["fees"]} == {sub.external_id}
        [row] = [e for e in WebhookEvent.objects.filter(webhook_type="invoice.created")
                 if json.loads(bytes(e.body))["invoice"]["lago_id"] == listed["lago_id"]]
        assert row.service_id == sub.service_id  # delivered to the service it bills, only
    # net of the credit note, each subscription was billed its own amount exactly once
    assert billed_totals(cloud_sub).untaxed == Decimal("51.00") and billed_totals(desk_sub).untaxed == Decimal("24.00")


def test_one_services_invoice_is_shown_and_announced_as_before(fake_odoo, rpc, two_services, api_client,
                                                                 other_api_client):
    cloud_sub, desk_sub = two_services
    # the same wizard over both orders, each with its own contact: Odoo makes one invoice per service
    moves = invoice_orders(rpc, fake_odoo, [cloud_sub.odoo_sale_order_id, desk_sub.odoo_sale_order_id])
    assert len(moves) == 2
    report = pull_invoices()
    assert (report.invoices_created, report.held, report.events) == (2, 0, 4)  # created + generated each
    assert not Invoice.objects.exclude(held_reason="").exists()
    cloud_body = api_client.get("/api/v1/invoices").json()["invoices"]
    desk_body = other_api_client.get("/api/v1/invoices").json()["invoices"]
    assert [i["total_amount_cents"] for i in cloud_body] == [5100]
    assert [i["total_amount_cents"] for i in desk_body] == [2400]
    by_service = {e.service.code: json.loads(bytes(e.body))
                  for e in WebhookEvent.objects.filter(webhook_type="invoice.created").select_related("service")}
    assert by_service["nexacloud"]["invoice"]["lago_id"] == cloud_body[0]["lago_id"]
    assert by_service["nexadesk"]["invoice"]["lago_id"] == desk_body[0]["lago_id"]


def test_lines_are_attributed_by_their_sale_order_lines_not_by_subscription_id(fake_odoo, rpc, two_services):
    """`subscription_id` is set only on lines of a running subscription (not on an upsell's, nor on a line
    of a plain order); the order a line was invoiced from is that of its `sale_line_ids`."""
    cloud_sub, desk_sub = two_services
    point_order_at(rpc, desk_sub.odoo_sale_order_id, cloud_sub.account_link.odoo_invoice_partner_id)
    [move_id] = invoice_orders(rpc, fake_odoo, [cloud_sub.odoo_sale_order_id, desk_sub.odoo_sale_order_id])
    line_ids = [line["id"] for line in fake_odoo.records("account.move.line", [["move_id", "=", move_id]], ["id"])]
    fake_odoo.store.write("account.move.line", line_ids, {"subscription_id": False})
    assert pull_invoices().held == 1
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert "nexadesk" in invoice.held_reason and "nexacloud" in invoice.held_reason
    assert {line.subscription_id for line in invoice.lines.all()} == {cloud_sub.pk, desk_sub.pk}
    assert billed_totals(desk_sub).untaxed == Decimal("24.00")
    assert events() == []
