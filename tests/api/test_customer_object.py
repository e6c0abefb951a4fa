"""#14 "customer objects round-trip": every Lago customer field an app sets is stored on its own account
and returned as Lago renders it; the official lago-python-client is the oracle."""
from __future__ import annotations

import httpx
import pytest
from lago_python_client.models.customer import Address, Customer, CustomerBillingConfiguration, Metadata, MetadataList

from tests.api.conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def full_customer(external_id: str = "cus_rt") -> Customer:
    return Customer(
        external_id=external_id, name="Acme", firstname="Ada", lastname="Lovelace", customer_type="company",
        legal_name="Acme Holdings Inc.", legal_number="ON-1234567", email="ap@acme.test", currency="CAD",
        address_line1="100 King St W", address_line2="Suite 5", city="Toronto", zipcode="M5X 1A9", state="ON",
        country="CA", phone="+1 416 555 0100", url="https://acme.test", tax_identification_number="123456789RT0001",
        net_payment_term=30,
        billing_configuration=CustomerBillingConfiguration(invoice_grace_period=3, document_locale="fr"),
        shipping_address=Address(address_line1="1 Dock Rd", address_line2="Bay 4", city="Hamilton",
                                 zipcode="L8L 1A1", state="ON", country="CA"),
        metadata=MetadataList(__root__=[Metadata(key="crm_id", value="A-77", display_in_invoice=True),
                                        Metadata(key="segment", value="smb", display_in_invoice=False)]),
    )


def test_every_customer_field_round_trips_through_the_official_client(lago):
    sent = full_customer()
    created = lago.customers.create(sent)
    found = lago.customers.find("cus_rt")
    for response in (created, found):
        for field in ("name", "firstname", "lastname", "customer_type", "legal_name", "legal_number", "email",
                      "currency", "address_line1", "address_line2", "city", "zipcode", "state", "country", "phone",
                      "url", "tax_identification_number", "net_payment_term"):
            assert getattr(response, field) == getattr(sent, field), field
        assert response.billing_configuration.invoice_grace_period == 3
        assert response.billing_configuration.document_locale == "fr"
        assert response.shipping_address == sent.shipping_address
        items = [(m.key, m.value, m.display_in_invoice) for m in response.metadata.__root__]
        assert items == [("crm_id", "A-77", True), ("segment", "smb", False)]
        assert all(m.lago_id for m in response.metadata.__root__)


def test_metadata_updates_as_lago_by_id_and_drops_items_not_sent(lago):
    created = lago.customers.create(full_customer())
    crm = next(m for m in created.metadata.__root__ if m.key == "crm_id")
    updated = lago.customers.create(Customer(external_id="cus_rt", metadata=MetadataList(__root__=[
        Metadata(id=crm.lago_id, key="crm_id", value="A-78", display_in_invoice=False),
        Metadata(key="region", value="east")])))
    items = {m.key: (m.lago_id, m.value, m.display_in_invoice) for m in updated.metadata.__root__}
    assert items == {"crm_id": (crm.lago_id, "A-78", False), "region": (items["region"][0], "east", False)}
    # a field not sent is kept (the client never sends nulls)
    assert updated.legal_number == "ON-1234567" and updated.billing_configuration.document_locale == "fr"


def test_sequential_id_and_slug_are_lagos_per_service_numbering(live_server, api_key, other_api_key):
    def create(key: str, external_id: str) -> dict:
        response = httpx.post(f"{live_server.url}/api/v1/customers", headers={"Authorization": f"Bearer {key}"},
                              json={"customer": {"external_id": external_id}})
        assert response.status_code == 200, response.text
        return response.json()["customer"]

    first, second = create(api_key, "a"), create(api_key, "b")
    again = create(api_key, "a")  # an upsert keeps its number
    theirs = create(other_api_key, "a")
    assert (first["sequential_id"], second["sequential_id"], again["sequential_id"]) == (1, 2, 1)
    assert theirs["sequential_id"] == 1  # per service, as Lago numbers per organization
    assert first["slug"].startswith("NEX-") and first["slug"].endswith("-001") and second["slug"].endswith("-002")
    assert first["slug"] != theirs["slug"]


def test_currency_is_null_until_set_or_given_by_the_first_plan(lago, api_client):
    assert lago.customers.create(Customer(external_id="plain")).currency is None
    assert lago.customers.create(Customer(external_id="plain", currency="USD")).currency == "USD"
    create_catalogue(api_client)
    create_subscription(api_client, customer="fresh")
    assert lago.customers.find("fresh").currency == "CAD"


@pytest.mark.parametrize("body, field", [
    ({"metadata": [{"key": f"k{n}", "value": "v"} for n in range(6)]}, "metadata"),
    ({"metadata": [{"key": "same", "value": "1"}, {"key": "same", "value": "2"}]}, "metadata"),
    ({"metadata": [{"key": "k" * 21, "value": "v"}]}, "metadata"),
    ({"net_payment_term": -1}, "net_payment_term"),
    ({"billing_configuration": {"invoice_grace_period": -2}}, "billing_configuration"),
    ({"billing_configuration": {"document_locale": "french!"}}, "billing_configuration"),
    ({"shipping_address": {"country": "Canada"}}, "shipping_address"),
    ({"customer_type": "robot"}, "customer_type"),
])
def test_invalid_customer_objects_are_refused_with_lagos_422(api_client, body, field):
    response = api_client.post("/api/v1/customers", {"customer": {"external_id": "bad", **body}}, format="json")
    assert response.status_code == 422, response.content
    assert field in response.json()["error_details"]
    assert api_client.get("/api/v1/customers/bad").status_code == 404
