"""Unified customers: one Customer per real client across services, matched by email; each service's
account keeps its own profile (tests/api/test_customer_isolation.py has the two-service matrix)."""
from __future__ import annotations

import threading

import httpx
import pytest

from identity.models import AccountLink, Customer


@pytest.mark.django_db
class TestUnification:
    def test_same_email_in_two_services_is_one_customer(self, api_client, other_api_client):
        ours = api_client.post("/api/v1/customers", {"customer": {
            "external_id": "user-1", "email": "Jane@Example.com", "name": "Jane"}}, format="json").json()
        theirs = other_api_client.post("/api/v1/customers", {"customer": {
            "external_id": "tenant-9", "email": "jane@example.COM"}}, format="json").json()
        assert Customer.objects.count() == 1
        assert AccountLink.objects.count() == 2
        # Each service sees its own account id and profile, not the shared customer's.
        assert ours["customer"]["lago_id"] != theirs["customer"]["lago_id"]
        assert theirs["customer"]["email"] == "jane@example.COM" and theirs["customer"]["name"] is None

    def test_different_emails_are_different_customers(self, api_client):
        for n in range(2):
            api_client.post("/api/v1/customers", {"customer": {"external_id": f"u{n}", "email": f"u{n}@x.test"}},
                            format="json")
        assert Customer.objects.count() == 2

    def test_accounts_without_email_are_not_merged(self, api_client, other_api_client):
        api_client.post("/api/v1/customers", {"customer": {"external_id": "a"}}, format="json")
        other_api_client.post("/api/v1/customers", {"customer": {"external_id": "a"}}, format="json")
        assert Customer.objects.count() == 2

    def test_an_email_that_belongs_to_a_known_client_never_moves_the_account(self, api_client, other_api_client):
        other_api_client.post("/api/v1/customers", {"customer": {"external_id": "t", "email": "boss@acme.test"}},
                              format="json")
        api_client.post("/api/v1/customers", {"customer": {"external_id": "u"}}, format="json")
        assert Customer.objects.count() == 2
        api_client.post("/api/v1/customers", {"customer": {"external_id": "u", "email": "BOSS@acme.test"}},
                        format="json")
        assert AccountLink.objects.get(external_id="u").customer != AccountLink.objects.get(external_id="t").customer
        assert AccountLink.objects.get(external_id="u").external_email == "BOSS@acme.test"

    def test_a_client_known_without_an_email_gets_the_first_one_its_account_sends(self, api_client, other_api_client):
        api_client.post("/api/v1/customers", {"customer": {"external_id": "u"}}, format="json")
        api_client.post("/api/v1/customers", {"customer": {"external_id": "u", "email": "new@acme.test"}},
                        format="json")
        other_api_client.post("/api/v1/customers", {"customer": {"external_id": "t", "email": "NEW@acme.test"}},
                              format="json")
        assert Customer.objects.count() == 1

    def test_soft_deleted_account_is_hidden_and_revived_by_upsert(self, api_client):
        api_client.post("/api/v1/customers", {"customer": {"external_id": "c", "name": "C"}}, format="json")
        assert api_client.delete("/api/v1/customers/c").json()["customer"]["deleted_at"]
        assert api_client.get("/api/v1/customers").json()["customers"] == []
        revived = api_client.post("/api/v1/customers", {"customer": {"external_id": "c"}}, format="json").json()
        assert revived["customer"]["deleted_at"] is None and revived["customer"]["name"] == "C"


@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_one_client_make_one_customer(live_server, api_key, other_api_key):
    start = threading.Barrier(6)
    statuses: list[int] = []

    def upsert(key: str, external_id: str) -> None:
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as http:
            start.wait()
            statuses.append(http.post("/api/v1/customers", json={"customer": {
                "external_id": external_id, "email": "same@client.test"}}).status_code)

    threads = [threading.Thread(target=upsert, args=(key, f"acct-{n // 2 % 2}"))
               for n, key in enumerate([api_key, other_api_key] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert Customer.objects.count() == 1 and AccountLink.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_customer_delete_that_fails_midway_changes_nothing(api_client, monkeypatch):
    from identity import services as identity_services
    from metering.models import Subscription
    from tests.api.conftest import create_catalogue, create_subscription

    create_catalogue(api_client)
    create_subscription(api_client, customer="cus_1")

    def fail(**kwargs):
        raise RuntimeError("database went away after the subscriptions ended")

    monkeypatch.setattr(identity_services, "delete_customer", fail)
    response = api_client.delete("/api/v1/customers/cus_1")

    assert response.status_code == 500 and response.json()["code"] == "internal_error"
    assert Subscription.objects.get(external_id="sub_1").status == "active"
    assert AccountLink.objects.get(external_id="cus_1").deleted_at is None
