"""F1 (#17): two services, one real client (same email). Each service reads and writes only its own
account: every customer field, the invoice list and the webhook payloads. Folding by email is an
internal identity fact (one Customer, one Odoo commercial partner) that never widens what a service sees.
"""
from __future__ import annotations

import json
from datetime import date

import pytest

from identity.models import AccountLink, Customer
from odoo_bridge.models import Invoice, InvoiceLine
from tests.api.conftest import create_catalogue, create_subscription
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

EMAIL = "jane@shared.test"

# Every customer field a service can set, with nexacloud's and nexadesk's own values.
PROFILES = {
    "nexacloud": {
        "name": "Jane Cloud", "firstname": "Jane", "lastname": "Cloud", "legal_name": "Cloud Corp",
        "legal_number": "LN-CLOUD", "customer_type": "company", "currency": "CAD",
        "address_line1": "1 Cloud St", "address_line2": "Suite 1", "city": "Toronto", "zipcode": "M5V 1A1",
        "state": "ON", "country": "CA", "phone": "+1 416 555 0101", "url": "https://cloud.example",
        "tax_identification_number": "111111111RT0001", "net_payment_term": 30,
        "billing_configuration": {"invoice_grace_period": 3, "document_locale": "fr"},
        "shipping_address": {"address_line1": "9 Dock Rd", "address_line2": "Bay 2", "city": "Ottawa",
                             "zipcode": "K1A 0A1", "state": "ON", "country": "CA"},
        "metadata": [{"key": "tier", "value": "gold", "display_in_invoice": True}],
    },
    "nexadesk": {
        "name": "Jane Desk", "firstname": "J.", "lastname": "Desk", "legal_name": "Desk Ltd",
        "legal_number": "LN-DESK", "customer_type": "individual", "currency": "USD",
        "address_line1": "2 Desk Ave", "address_line2": "Floor 3", "city": "Calgary", "zipcode": "T2P 1J9",
        "state": "AB", "country": "US", "phone": "+1 403 555 0202", "url": "https://desk.example",
        "tax_identification_number": "222222222RT0001", "net_payment_term": 15,
        "billing_configuration": {"invoice_grace_period": 7, "document_locale": "en"},
        "shipping_address": {"address_line1": "5 Yard Ln", "address_line2": "Unit 9", "city": "Edmonton",
                             "zipcode": "T5J 0N3", "state": "AB", "country": "US"},
        "metadata": [{"key": "seats", "value": "12", "display_in_invoice": False}],
    },
}
FIELDS = [field for field in PROFILES["nexacloud"]]
NESTED = {"billing_configuration", "shipping_address"}


def upsert(client, external_id: str, **fields) -> dict:
    response = client.post("/api/v1/customers", {"customer": {"external_id": external_id, **fields}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["customer"]


def shown(customer: dict, field: str):
    """What the API shows for ``field`` of a request (metadata without its ids and dates)."""
    if field == "metadata":
        return [{k: item[k] for k in ("key", "value", "display_in_invoice")} for item in customer["metadata"]]
    if field in NESTED:
        return {k: customer[field][k] for k in PROFILES["nexacloud"][field]}
    return customer[field]


def unset(customer: dict, field: str) -> bool:
    value = shown(customer, field)
    if field in NESTED:
        return all(v is None for v in value.values())
    return value in (None, [])


@pytest.fixture
def both(api_client, other_api_client):
    """nexacloud's full account first; then nexadesk's account with the same email, and nothing else."""
    cloud = upsert(api_client, "cloud-7", email=EMAIL, **PROFILES["nexacloud"])
    desk = upsert(other_api_client, "desk-3", email=EMAIL.upper())
    return cloud, desk


@pytest.mark.parametrize("field", FIELDS)
def test_a_new_account_with_a_known_email_reads_nothing_of_the_other_service(both, field):
    cloud, desk = both
    assert shown(cloud, field) == (PROFILES["nexacloud"][field] if field not in NESTED
                                   else PROFILES["nexacloud"][field])
    assert unset(desk, field), (field, shown(desk, field))
    # one real client for the identity, two accounts for what services see
    assert Customer.objects.count() == 1 and AccountLink.objects.count() == 2


@pytest.mark.parametrize("field", FIELDS)
def test_each_service_writes_only_its_own_account(api_client, other_api_client, both, field):
    upsert(other_api_client, "desk-3", **{field: PROFILES["nexadesk"][field]})
    cloud_now = api_client.get("/api/v1/customers/cloud-7").json()["customer"]
    desk_now = other_api_client.get("/api/v1/customers/desk-3").json()["customer"]
    assert shown(cloud_now, field) == PROFILES["nexacloud"][field]
    assert shown(desk_now, field) == PROFILES["nexadesk"][field]
    # and back: nexacloud's write never reaches nexadesk's account
    upsert(api_client, "cloud-7", **{field: PROFILES["nexadesk"][field]} if field != "metadata" else {
        "metadata": [{"key": "tier", "value": "silver"}]})
    assert shown(other_api_client.get("/api/v1/customers/desk-3").json()["customer"], field) == (
        PROFILES["nexadesk"][field])


def test_lists_and_searches_never_cross_services(api_client, other_api_client, both):
    assert [c["external_id"] for c in other_api_client.get("/api/v1/customers").json()["customers"]] == ["desk-3"]
    for term in ("Cloud", "cloud-7", "Jane Cloud"):
        found = other_api_client.get("/api/v1/customers", {"search_term": term}).json()["customers"]
        assert found == [], term
    assert other_api_client.get("/api/v1/customers", {"countries[]": "CA"}).json()["customers"] == []
    assert other_api_client.get("/api/v1/customers/cloud-7").status_code == 404


def test_an_email_change_never_repoints_an_account(api_client, other_api_client):
    cloud = upsert(api_client, "cloud-7", email=EMAIL, **PROFILES["nexacloud"])
    upsert(other_api_client, "desk-9", name="Mallory")
    mallory = AccountLink.objects.get(external_id="desk-9")
    desk = upsert(other_api_client, "desk-9", email=EMAIL)
    mallory.refresh_from_db()
    assert mallory.customer_id != AccountLink.objects.get(external_id="cloud-7").customer_id
    assert desk["name"] == "Mallory" and desk["email"] == EMAIL
    assert all(unset(desk, f) for f in FIELDS if f != "name")
    assert api_client.get("/api/v1/customers/cloud-7").json()["customer"] == cloud


def _invoice_of(link: AccountLink, *, number: str, move_id: int) -> Invoice:
    invoice = Invoice.objects.create(
        service=link.service, customer=link.customer, account_link=link,
        subscription=link.subscriptions.first(), odoo_move_id=move_id, number=number, status="finalized",
        currency="CAD", issuing_date=date(2026, 11, 1))
    InvoiceLine.objects.create(invoice=invoice, name="fee", quantity=1, unit_amount=10, amount=10, total_amount=10)
    return invoice


def test_invoices_and_fees_are_scoped_to_the_account_and_never_show_the_unified_customer(
        api_client, other_api_client, both):
    create_catalogue(api_client)
    create_subscription(api_client, customer="cloud-7")
    create_catalogue(other_api_client)
    create_subscription(other_api_client, customer="desk-3")
    cloud_link, desk_link = AccountLink.objects.get(external_id="cloud-7"), AccountLink.objects.get(external_id="desk-3")
    mine, theirs = _invoice_of(cloud_link, number="C-1", move_id=1), _invoice_of(desk_link, number="D-1", move_id=2)
    # a second account of nexadesk folded into the same client sees no invoice of desk-3 either
    upsert(other_api_client, "desk-4", email=EMAIL)

    desk_lists = {
        "all": other_api_client.get("/api/v1/invoices").json()["invoices"],
        "by customer": other_api_client.get("/api/v1/invoices", {"external_customer_id": "desk-3"}).json()["invoices"],
        "customer route": other_api_client.get("/api/v1/customers/desk-3/invoices").json()["invoices"],
    }
    for name, invoices in desk_lists.items():
        assert [i["number"] for i in invoices] == ["D-1"], name
    assert other_api_client.get("/api/v1/customers/desk-4/invoices").json()["invoices"] == []
    assert other_api_client.get("/api/v1/invoices", {"external_customer_id": "desk-4"}).json()["invoices"] == []
    assert other_api_client.get(f"/api/v1/invoices/{mine.pk}").status_code == 404
    body = other_api_client.get(f"/api/v1/invoices/{theirs.pk}").json()["invoice"]
    assert body["customer"]["lago_id"] == str(desk_link.pk) and body["customer"]["name"] is None
    assert {fee["lago_customer_id"] for fee in body["fees"]} == {str(desk_link.pk)}
    raw = json.dumps([other_api_client.get("/api/v1/invoices").json(),
                      api_client.get("/api/v1/invoices").json()])
    assert str(cloud_link.customer_id) not in raw  # the unified customer's id is never exposed
    assert [i["number"] for i in api_client.get("/api/v1/invoices").json()["invoices"]] == ["C-1"]


def test_webhook_payloads_carry_only_the_services_own_account(api_client, other_api_client, both):
    upsert(other_api_client, "desk-3", name="Jane Desk")
    payloads = [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(service__code="nexadesk")
                .order_by("created_at")]
    assert [p["webhook_type"] for p in payloads] == ["customer.created", "customer.updated"]
    raw = json.dumps(payloads)
    cloud = PROFILES["nexacloud"]
    for value in (cloud["name"], cloud["legal_name"], cloud["phone"], cloud["tax_identification_number"],
                  cloud["address_line1"], cloud["url"], cloud["legal_number"], "tier"):
        assert value not in raw, value
    assert str(Customer.objects.get().pk) not in raw
    assert payloads[-1]["customer"]["name"] == "Jane Desk"
    assert payloads[-1]["customer"]["lago_id"] == str(AccountLink.objects.get(external_id="desk-3").pk)


def test_metadata_ids_of_another_account_update_nothing_there(api_client, other_api_client, both):
    cloud, _ = both
    foreign_id = cloud["metadata"][0]["lago_id"]
    desk = upsert(other_api_client, "desk-3", metadata=[{"id": foreign_id, "key": "tier", "value": "stolen"}])
    assert desk["metadata"][0]["lago_id"] != foreign_id and desk["metadata"][0]["value"] == "stolen"
    assert api_client.get("/api/v1/customers/cloud-7").json()["customer"]["metadata"] == cloud["metadata"]
