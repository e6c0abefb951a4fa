"""Fixtures of the ops console: a billed customer made through the API, and staff users."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission, User

from identity.models import Customer
from metering.models import Subscription
from tests.api.conftest import create_catalogue, create_subscription
# The NexaCloud source database of the migration tests, for the import the browser starts.
from tests.migration.conftest import nexacloud_dsn, source_admin_dsn  # noqa: F401

STAFF_PASSWORD = "console-test-pass-7Q2x"


@dataclass
class Billed:
    customer: Customer
    subscription: Subscription


def ingest(api_client, *, count: int, external_id: str = "sub_1", start: int = 0, cpu_seconds: int = 5400) -> None:
    events = [{"transaction_id": f"tx-{i}", "external_subscription_id": external_id, "code": "cpu_seconds",
               "properties": {"cpu_seconds": cpu_seconds}} for i in range(start, start + count)]
    response = api_client.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 200, response.content


@pytest.fixture
def billed(api_client) -> Billed:
    """A customer of the nexacloud service with a live subscription and usage, all through the API."""
    create_catalogue(api_client)
    response = api_client.post("/api/v1/customers", {"customer": {
        "external_id": "cus_1", "name": "Acme Robotics", "email": "billing@acme.example", "currency": "CAD"}},
        format="json")
    assert response.status_code == 200, response.content
    create_subscription(api_client, subscription_at="2026-01-01T00:00:00Z")
    ingest(api_client, count=3)
    subscription = Subscription.objects.get(external_id="sub_1")
    return Billed(customer=subscription.account_link.customer, subscription=subscription)


@pytest.fixture
def viewer(db) -> User:
    """Staff who may look at everything and change nothing."""
    user = User.objects.create_user("viewer", "viewer@example.com", STAFF_PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client
