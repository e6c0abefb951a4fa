"""F1 (#17) on the Odoo side, following Odoo's own model: one commercial partner per unified customer,
one invoice-address contact per service account under it, used as the order's invoice and delivery
address, so the taxes follow the address that service set; a payment token is the account's own."""

from __future__ import annotations

import pytest

from identity.models import AccountLink
from migration.golive import check_stripe
from migration.odoo_gateway import OdooBridgeLiveOrderGateway
from odoo_bridge import mapping
from odoo_bridge.sync import push_cycle
from tests.odoo_bridge.conftest import Catalog

pytestmark = pytest.mark.django_db


def _products_taxed_with_gst(fake_odoo, catalogs: list[Catalog]) -> int:
    """Ops configured GST 5% as the products' customer tax in Odoo; the bridge finds them by code."""
    store = fake_odoo.store
    gst = store.xmlid_id("account", "1_gst_sale_tax_5")
    vals = []
    for cat in catalogs:
        for charge in (cat.api_charge, cat.cpu_charge):
            vals.append({"name": charge.metric.name, "default_code": mapping.charge_product_code(charge)})
        vals.append({"name": cat.plan.name, "default_code": mapping.plan_product_code(cat.plan),
                     "recurring_invoice": True})
        vals.append({"name": cat.plan.name, "default_code": mapping.fee_product_code(cat.plan)})
    for v in vals:
        store.create("product.product", [{**v, "type": "service", "taxes_id": [[6, 0, [gst]]]}])
    return gst


@pytest.fixture
def two_services(catalog, other_service):
    """One real client (one email) with an account in nexacloud (Ontario) and one in nexadesk (Alberta)."""
    desk = Catalog(other_service)
    customer = catalog.customer(email="jane@shared.test")
    cloud = catalog.account(customer=customer, name="Jane Cloud", state="ON", country="CA", city="Toronto",
                            tax_identification_number="111111111RT0001", stripe_customer_id="cus_cloud")
    desk_account = desk.account(customer=customer, name="Jane Desk", state="AB", country="CA", city="Calgary",
                                tax_identification_number="222222222RT0001")
    cloud_sub = catalog.subscription(account=cloud)
    desk_sub = desk.subscription(account=desk_account)
    catalog.rate(cloud_sub, catalog.api_charge, units="100", amount="2.000000")
    desk.rate(desk_sub, desk.api_charge, units="100", amount="2.000000")
    return catalog, desk, cloud_sub, desk_sub


def test_one_commercial_partner_and_one_invoice_contact_per_service_account(fake_odoo, two_services):
    catalog, desk, cloud_sub, desk_sub = two_services
    report = push_cycle()
    assert not report.aborted, report.aborted
    customer = cloud_sub.account_link.customer
    [commercial] = fake_odoo.records("res.partner", [["ref", "=", mapping.customer_ref(customer)]],
                                     ["name", "vat", "street", "state_id", "child_ids"])
    # the commercial partner carries nothing a service set
    assert commercial["name"] == "jane@shared.test" and not commercial["vat"] and not commercial["state_id"]
    contacts = {}
    for sub in (cloud_sub, desk_sub):
        [contact] = fake_odoo.records("res.partner", [["ref", "=", mapping.account_ref(sub.account_link)]],
                                      ["name", "type", "parent_id", "commercial_partner_id", "vat", "state_id",
                                       "city"])
        assert (contact["type"], contact["parent_id"][0], contact["commercial_partner_id"][0]) == (
            "invoice", commercial["id"], commercial["id"])
        contacts[sub.account_link.name] = contact
        sub.account_link.refresh_from_db()
        assert sub.account_link.odoo_invoice_partner_id == contact["id"]
    assert sorted(commercial["child_ids"]) == sorted(c["id"] for c in contacts.values())
    cloud, desk_contact = contacts["Jane Cloud"], contacts["Jane Desk"]
    # each service's own tax number survives Odoo's commercial-field sync (written after the create)
    assert (cloud["vat"], cloud["state_id"][1], cloud["city"]) == ("111111111RT0001", "Ontario", "Toronto")
    assert (desk_contact["vat"], desk_contact["state_id"][1], desk_contact["city"]) == (
        "222222222RT0001", "Alberta", "Calgary")
    for sub, contact in ((cloud_sub, cloud), (desk_sub, desk_contact)):
        [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", mapping.subscription_ref(sub)]],
                                    ["partner_id", "partner_invoice_id", "partner_shipping_id"])
        assert order["partner_id"][0] == commercial["id"]
        assert order["partner_invoice_id"][0] == order["partner_shipping_id"][0] == contact["id"]
    # nothing left to write: a second cycle only reads
    fake_odoo.reset_counters()
    assert push_cycle().records_written == 0 and fake_odoo.call_count(method="write") == 0


def test_taxes_follow_the_address_each_service_set(fake_odoo, two_services):
    catalog, desk, cloud_sub, desk_sub = two_services
    gst = _products_taxed_with_gst(fake_odoo, [catalog, desk])
    hst = fake_odoo.store.xmlid_id("account", "1_hst_sale_tax_13")
    push_cycle()
    taxes = {}
    for sub, cat in ((cloud_sub, catalog), (desk_sub, desk)):
        [line] = fake_odoo.records("sale.order.line", [
            ["order_id.client_order_ref", "=", mapping.subscription_ref(sub)],
            ["product_id.default_code", "=", mapping.charge_product_code(cat.api_charge)]], ["tax_id"])
        taxes[sub.account_link.name] = line["tax_id"]
    # Ontario's fiscal position maps GST to HST for nexacloud's order only; Alberta pays GST
    assert taxes == {"Jane Cloud": [hst], "Jane Desk": [gst]}


def test_a_service_address_change_moves_only_its_own_contact(fake_odoo, two_services):
    catalog, desk, cloud_sub, desk_sub = two_services
    push_cycle()
    AccountLink.objects.filter(pk=desk_sub.account_link_id).update(state="ON", city="Ottawa")
    push_cycle()
    cities = {r["ref"]: (r["city"], r["state_id"][1]) for r in fake_odoo.records(
        "res.partner", [["ref", "=like", "fb-acct-%"]], ["ref", "city", "state_id"])}
    assert cities == {mapping.account_ref(cloud_sub.account_link): ("Toronto", "Ontario"),
                      mapping.account_ref(desk_sub.account_link): ("Ottawa", "Ontario")}


def test_a_stored_payment_method_never_serves_another_services_order(fake_odoo, two_services, settings):
    catalog, desk, cloud_sub, desk_sub = two_services
    push_cycle()
    cloud_account, desk_account = AccountLink.objects.get(pk=cloud_sub.account_link_id), AccountLink.objects.get(
        pk=desk_sub.account_link_id)
    # nexadesk's account of the same client has no Stripe customer of its own: go-live refuses it
    check, _ = check_stripe(desk_account)
    assert not check.ok and check.detail == "customer has no Stripe customer id"
    # nexacloud's token hangs on nexacloud's own contact: a search for nexadesk's contact finds nothing
    gateway = OdooBridgeLiveOrderGateway()
    token = gateway.ensure_payment_token(partner_id=cloud_account.odoo_invoice_partner_id,
                                        stripe_customer_id="cus_cloud", stripe_payment_method_id="pm_1")
    assert fake_odoo.records("payment.token", [["partner_id", "=", desk_account.odoo_invoice_partner_id]]) == []
    assert [t["id"] for t in fake_odoo.records("payment.token", [
        ["partner_id", "=", cloud_account.odoo_invoice_partner_id]])] == [token]
