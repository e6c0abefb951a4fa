"""Lago's invoice grace period per service (organization) and per customer (issue #12): a
window keeps taking late usage until its end + the subscription's grace, then freezes and
refuses it with ``period_closed``. Driven through the HTTP API and the rating task, with the
clock set by the test (``django.utils.timezone.now``)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from metering import tasks
from metering.models import RatedUsage, Subscription

from .test_lifecycle import Clock, make_plan, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from django.utils import timezone

    clock = Clock(utc(2026, 1, 15))
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture(autouse=True)
def _one_rating_task(settings):
    settings.RATING_SHARDS = 1
    settings.RATING_GRACE_SECONDS = 0


def put_grace(client, days: int | None):
    return client.put("/api/v1/organizations", {"organization": {
        "billing_configuration": {"invoice_grace_period": days}}}, format="json")


def customer(client, external_id: str, **billing) -> None:
    body = {"external_id": external_id, "name": external_id, "currency": "CAD"}
    if billing:
        body["billing_configuration"] = billing
    response = client.post("/api/v1/customers", {"customer": body}, format="json")
    assert response.status_code == 200, response.content


def subscribe(client, customer_id: str, external_id: str) -> str:
    response = client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": customer_id, "plan_code": "basic", "external_id": external_id}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["subscription"]["lago_id"]


def send(client, external_id: str, stamped: datetime, tx: str):
    return client.post("/api/v1/events", {"event": {
        "transaction_id": tx, "external_subscription_id": external_id, "code": "calls",
        "timestamp": int(stamped.timestamp())}}, format="json")


def rate(clock: Clock, at: datetime) -> None:
    clock.now = at
    tasks.rate_open_windows()


def january(lago_id: str) -> tuple[str, Decimal]:
    row = RatedUsage.objects.get(subscription_id=lago_id, window_start=utc(2026, 1, 15))
    return row.state, row.units


def refused(response) -> bool:
    return response.status_code == 422 and response.json()["error_details"] == {"timestamp": ["period_closed"]}


def test_organization_grace_is_stored_rendered_and_validated(api_client, settings):
    billing = api_client.get("/api/v1/organizations").json()["organization"]["billing_configuration"]
    assert billing["invoice_grace_period"] == 0  # unset: the deployment default, 0 s
    response = put_grace(api_client, 2)
    assert response.status_code == 200
    assert response.json()["organization"]["billing_configuration"]["invoice_grace_period"] == 2
    assert api_client.get("/api/v1/organizations").json()["organization"]["billing_configuration"][
        "invoice_grace_period"] == 2
    for wrong in (-1, 366, "two"):
        response = put_grace(api_client, wrong)
        assert response.status_code == 422, (wrong, response.content)
        assert "invoice_grace_period" in str(response.json()["error_details"])
    # null: back to the deployment default (2 days of RATING_GRACE_SECONDS render as 2)
    settings.RATING_GRACE_SECONDS = 2 * 86400 + 60
    assert put_grace(api_client, None).json()["organization"]["billing_configuration"]["invoice_grace_period"] == 2
    # a PUT without billing_configuration leaves the grace alone
    put_grace(api_client, 5)
    response = api_client.put("/api/v1/organizations", {"organization": {"name": "Renamed"}}, format="json")
    assert response.json()["organization"]["billing_configuration"]["invoice_grace_period"] == 5


def test_service_grace_of_two_days_bills_a_late_event_on_its_window_then_closes_it(api_client, clock):
    assert put_grace(api_client, 2).status_code == 200
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    customer(api_client, "cus_1")
    lago_id = subscribe(api_client, "cus_1", "sub_1")
    assert send(api_client, "sub_1", utc(2026, 1, 20), "tx-1").status_code == 200
    rate(clock, utc(2026, 2, 1, 0, 0, 5))  # January ended, inside its 2 days of grace: still open
    # One day after the end: a late counter stamped in January is accepted into January.
    clock.now = utc(2026, 2, 2)
    assert send(api_client, "sub_1", utc(2026, 1, 31, 23, 30), "tx-late").status_code == 200
    assert send(api_client, "sub_1", utc(2026, 2, 1, 12), "tx-feb").status_code == 200  # February's
    rate(clock, utc(2026, 2, 2, 0, 5))
    assert january(lago_id) == ("open", Decimal(2))
    rate(clock, utc(2026, 2, 2, 23, 59))  # end + grace not yet come
    assert Subscription.objects.get(pk=lago_id).current_period_start == utc(2026, 1, 15)
    # Feb 3 00:00 = end + 2 days: January freezes with both calls (billed on its own window).
    rate(clock, utc(2026, 2, 3, 0, 0, 5))
    assert january(lago_id) == ("frozen", Decimal(2))
    february = RatedUsage.objects.get(subscription_id=lago_id, window_start=utc(2026, 2, 1))
    assert (february.state, february.units) == ("open", Decimal(1))
    # Three days after the end: the window froze, the late event is refused.
    clock.now = utc(2026, 2, 4)
    assert refused(send(api_client, "sub_1", utc(2026, 1, 31, 23, 45), "tx-too-late"))


def test_customer_grace_beats_the_service_grace(api_client, clock):
    put_grace(api_client, 2)
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    customer(api_client, "cus_own", invoice_grace_period=0)  # its own: no grace at all
    customer(api_client, "cus_org")  # the service's 2 days
    customer(api_client, "cus_later")  # the service's, until it sets its own
    own, org, later = (subscribe(api_client, "cus_own", "sub_own"), subscribe(api_client, "cus_org", "sub_org"),
                       subscribe(api_client, "cus_later", "sub_later"))
    assert Subscription.objects.get(pk=own).grace_period == timedelta(0)
    assert Subscription.objects.get(pk=org).grace_period == timedelta(days=2)
    # The customer's setting changed after its subscription started: the subscription follows.
    customer(api_client, "cus_later", invoice_grace_period=5)
    assert Subscription.objects.get(pk=later).grace_period == timedelta(days=5)
    for external_id in ("sub_own", "sub_org", "sub_later"):
        assert send(api_client, external_id, utc(2026, 1, 20), f"tx-{external_id}").status_code == 200
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    assert [january(s)[0] for s in (own, org, later)] == ["frozen", "open", "open"]
    clock.now = utc(2026, 2, 1, 12)
    assert refused(send(api_client, "sub_own", utc(2026, 1, 31), "tx-own-late"))
    assert send(api_client, "sub_org", utc(2026, 1, 31), "tx-org-late").status_code == 200
    rate(clock, utc(2026, 2, 4))  # past the service's 2 days, inside the customer's 5
    assert [january(s) for s in (org, later)] == [("frozen", Decimal(2)), ("open", Decimal(1))]
    rate(clock, utc(2026, 2, 6, 0, 0, 5))
    assert january(later) == ("frozen", Decimal(1))


def test_a_grace_change_mid_window_applies_to_the_open_window_and_never_reopens_a_frozen_one(api_client, clock):
    """Lowered during the grace: the next run closes the window with every event taken until then
    (none lost); raised later: the window open now takes it; a frozen window stays frozen."""
    put_grace(api_client, 2)
    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    customer(api_client, "cus_1")
    lago_id = subscribe(api_client, "cus_1", "sub_1")
    rate(clock, utc(2026, 2, 1, 6))
    assert send(api_client, "sub_1", utc(2026, 1, 31, 22), "tx-1").status_code == 200  # in the grace
    clock.now = utc(2026, 2, 1, 12)
    assert put_grace(api_client, 0).status_code == 200  # lowered: January is due now
    assert Subscription.objects.get(pk=lago_id).grace_period == timedelta(0)
    rate(clock, utc(2026, 2, 1, 12, 5))
    assert january(lago_id) == ("frozen", Decimal(1))  # the late event taken before the change is billed
    assert refused(send(api_client, "sub_1", utc(2026, 1, 31, 23), "tx-2"))
    # Raised again: January does not reopen (a late event stays refused), February takes 3 days.
    clock.now = utc(2026, 2, 10)
    put_grace(api_client, 3)
    assert refused(send(api_client, "sub_1", utc(2026, 1, 31, 23), "tx-3"))
    rate(clock, utc(2026, 3, 3, 12))
    assert send(api_client, "sub_1", utc(2026, 2, 28, 23), "tx-4").status_code == 200
    rate(clock, utc(2026, 3, 4, 0, 0, 5))
    february = RatedUsage.objects.get(subscription_id=lago_id, window_start=utc(2026, 2, 1))
    assert (february.state, february.units) == ("frozen", Decimal(1))
    assert RatedUsage.objects.get(subscription_id=lago_id, window_start=utc(2026, 1, 15)).units == Decimal(1)


def test_the_service_grace_is_edited_in_the_admin_and_reaches_its_subscriptions(api_client, admin_client, service):
    from django.urls import reverse

    from identity.models import ApiKey

    make_plan(api_client, "basic", amount_cents=3000, pay_in_advance=False)
    customer(api_client, "cus_1")
    lago_id = subscribe(api_client, "cus_1", "sub_1")
    assert Subscription.objects.get(pk=lago_id).grace_period is None  # the deployment default
    [key] = ApiKey.objects.filter(service=service)
    url = reverse("admin:identity_service_change", args=[service.pk])
    form = {"code": service.code, "name": service.name, "default_currency": "CAD", "is_active": "on",
            "api_keys-TOTAL_FORMS": "1", "api_keys-INITIAL_FORMS": "1", "api_keys-0-id": str(key.pk),
            "api_keys-0-service": str(service.pk)}
    response = admin_client.post(url, {**form, "invoice_grace_period": "366"})
    assert response.status_code == 200 and "invoice_grace_period" in response.context["adminform"].form.errors
    response = admin_client.post(url, {**form, "invoice_grace_period": "3"})
    assert response.status_code == 302, response.content
    assert Subscription.objects.get(pk=lago_id).grace_period == timedelta(days=3)
    assert api_client.get("/api/v1/organizations").json()["organization"]["billing_configuration"][
        "invoice_grace_period"] == 3
    assert admin_client.post(url, {**form, "invoice_grace_period": ""}).status_code == 302
    assert Subscription.objects.get(pk=lago_id).grace_period is None
