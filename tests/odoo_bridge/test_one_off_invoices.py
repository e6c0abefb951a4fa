"""Add-ons and one-off invoices (#14): the official Lago client against a live server, realised as
one posted Odoo invoice per request in the fake Odoo (exactly once, whatever answer is lost), mirrored
back with Lago's invoice_type ``one_off`` and announced by ``invoice.one_off_created``."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AddOn, Customer
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList, InvoiceResponse, OneOffInvoice

from odoo_bridge.models import Invoice, OdooSyncState, SyncKind
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


@pytest.fixture
def other_lago(live_server, other_api_key) -> Client:
    return Client(api_key=other_api_key, api_url=live_server.url)


def sent(webhook_type: str) -> list[dict]:
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type=webhook_type)
            .order_by("created_at")]


def test_add_on_crud_through_the_client(lago, other_lago):
    created = lago.add_ons.create(AddOn(name="Setup", code="setup", amount_cents=15000, amount_currency="CAD",
                                        description="One-time onboarding"))
    assert (created.code, created.amount_cents, created.amount_currency) == ("setup", 15000, "CAD")
    assert lago.add_ons.find("setup").lago_id == created.lago_id
    updated = lago.add_ons.update(AddOn(amount_cents=17550, invoice_display_name="Onboarding"), "setup")
    assert updated.amount_cents == 17550 and updated.invoice_display_name == "Onboarding"
    page = lago.add_ons.find_all({"per_page": 10})
    assert [a.code for a in page["add_ons"]] == ["setup"] and page["meta"]["total_count"] == 1
    # scoped to the calling service; a code is unique per service
    with pytest.raises(LagoApiError) as foreign:
        other_lago.add_ons.find("setup")
    assert foreign.value.status_code == 404 and foreign.value.response["code"] == "add_on_not_found"
    with pytest.raises(LagoApiError) as duplicate:
        lago.add_ons.create(AddOn(name="Again", code="setup", amount_cents=1, amount_currency="CAD"))
    assert duplicate.value.status_code == 422
    assert duplicate.value.response["error_details"] == {"code": ["value_already_exist"]}
    with pytest.raises(LagoApiError) as taxes:
        lago.add_ons.create(AddOn(name="Taxed", code="taxed", amount_cents=1, amount_currency="CAD",
                                  tax_codes=["gst"]))
    assert taxes.value.response["error_details"] == {"tax_codes": ["not_supported"]}
    lago.add_ons.destroy("setup")
    with pytest.raises(LagoApiError) as gone:
        lago.add_ons.find("setup")
    assert gone.value.response["code"] == "add_on_not_found"
    assert lago.add_ons.create(AddOn(name="Setup v2", code="setup", amount_cents=1,
                                     amount_currency="CAD")).code == "setup"


def test_one_off_invoice_is_one_posted_odoo_invoice_mirrored_back(lago, other_lago, fake_odoo):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", email="billing@acme.test", currency="CAD",
                                   country="CA", state="ON"))
    setup = lago.add_ons.create(AddOn(name="Setup", code="setup", amount_cents=15000, amount_currency="CAD"))
    lago.add_ons.create(AddOn(name="Training", code="training", amount_cents=9900, amount_currency="CAD"))
    # ops already made the setup product in Odoo, with GST: it is found by default_code, not created again
    gst = fake_odoo.store.xmlid_id("account", "1_gst_sale_tax_5")
    [premade] = fake_odoo.store.create("product.product", [{"name": "Setup", "default_code": f"fb-addon-{setup.lago_id}",
                                                            "taxes_id": [[6, 0, [gst]]]}])

    draft = lago.invoices.create(OneOffInvoice(external_customer_id="cus_1", currency="CAD", fees=InvoiceFeesList(
        __root__=[InvoiceFee(add_on_code="setup", units=2, description="two sites"),
                  InvoiceFee(add_on_code="training", unit_amount_cents=12345, invoice_display_name="Training day")])))
    assert isinstance(draft, InvoiceResponse)
    assert (draft.invoice_type, draft.status, draft.fees_amount_cents) == ("one_off", "draft", 2 * 15000 + 12345)
    # plain decimal strings (never "1.5E+2"), as Lago writes them
    assert [(f.units, f.precise_unit_amount) for f in draft.fees.__root__] == [("2", "150"), ("1", "123.45")]
    assert lago.invoices.find(draft.lago_id).status == "draft"  # until Odoo's invoice is mirrored back

    # Odoo commits the move but the answer is lost: the next cycle finds it by ref and posts it
    fake_odoo.faults.add("lost_response", model="account.move", method="create", times=1)
    first = push_cycle()
    assert first.aborted
    later = timezone.now() + dt.timedelta(hours=1)  # past the failed row's backoff
    push_cycle(now=later)
    assert push_cycle(now=later).round_trips == 0  # posted: nothing left to do
    [move] = fake_odoo.records("account.move", [["ref", "=", f"fb-oneoff-{draft.lago_id}"]])
    assert move["state"] == "posted" and move["move_type"] == "out_invoice"
    assert len(fake_odoo.records("account.move", [["move_type", "=", "out_invoice"]])) == 1
    contact = OdooSyncState.objects.get(kind=SyncKind.ACCOUNT).odoo_id
    assert move["partner_id"][0] == contact  # the service account's invoice contact
    lines = fake_odoo.records("account.move.line", [["move_id", "=", move["id"]]])
    assert [(ln["name"], ln["quantity"], ln["price_unit"]) for ln in lines] == [
        ("Setup — two sites", 2.0, 150.0), ("Training day", 1.0, 123.45)]
    assert lines[0]["product_id"][0] == premade
    # Odoo's taxes: the product's GST mapped to HST by the Ontario fiscal position of the contact
    assert move["amount_untaxed"] == 423.45 and move["amount_tax"] == 39.0

    pull_invoices()
    pull_invoices()
    invoice = lago.invoices.find(draft.lago_id)
    assert (invoice.lago_id, invoice.invoice_type, invoice.status) == (draft.lago_id, "one_off", "finalized")
    assert invoice.total_amount_cents == 46245 and invoice.taxes_amount_cents == 3900
    fees = invoice.fees.__root__
    assert [(f.item.type, f.item.code, f.amount_cents) for f in fees] == [("add_on", "setup", 30000),
                                                                         ("add_on", "training", 12345)]
    assert [(f.units, f.precise_unit_amount) for f in fees] == [("2", "150"), ("1", "123.45")]
    assert [i.lago_id for i in lago.invoices.find_all({"invoice_type": "one_off"})["invoices"]] == [draft.lago_id]
    assert lago.invoices.find_all({"invoice_type": "subscription"})["invoices"] == []
    [created] = sent("invoice.one_off_created")
    InvoiceResponse.parse_obj(created["invoice"])
    assert created["invoice"]["lago_id"] == draft.lago_id and sent("invoice.created") == []
    assert Invoice.objects.get().one_off.odoo_move_id == move["id"]

    with pytest.raises(LagoApiError) as foreign:
        other_lago.invoices.find(draft.lago_id)
    assert foreign.value.response["code"] == "invoice_not_found"


def test_one_off_invoice_refusals(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    lago.add_ons.create(AddOn(name="Setup", code="setup", amount_cents=100, amount_currency="USD"))
    cases = [
        ({"external_customer_id": "nobody", "fees": [{"add_on_code": "setup"}]}, 404, "customer_not_found"),
        ({"external_customer_id": "cus_1", "fees": [{"add_on_code": "nope"}]}, 404, "add_on_not_found"),
        ({"external_customer_id": "cus_1", "currency": "USD", "fees": [{"add_on_code": "setup"}]}, 422,
         "validation_errors"),
        ({"external_customer_id": "cus_1", "fees": []}, 422, "validation_errors"),
        ({"external_customer_id": "cus_1", "fees": [{"add_on_code": "setup", "tax_codes": ["x"]}]}, 422,
         "validation_errors"),
    ]
    for body, status, code in cases:
        with pytest.raises(LagoApiError) as refused:
            lago.invoices.create(OneOffInvoice(**body))
        assert (refused.value.status_code, refused.value.response["code"]) == (status, code), body
    assert Invoice.objects.count() == 0
