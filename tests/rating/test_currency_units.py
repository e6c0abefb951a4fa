"""Minor units follow the currency's ISO 4217 exponent (JPY 0, USD/CAD 2, KWD 3) wherever Lago
speaks in ``*_cents``; a customer subscribes only in its own currency."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from billing_kit.errors import ValidationFailed
from billing_kit.formatting import from_cents, minor_unit_exponent, to_cents
from identity.models import AccountLink
from metering import rating
from metering.models import Plan, Subscription
from metering.services.catalogue import check_currency_compatible
from tests.api.conftest import create_catalogue, create_subscription

SECOND = timedelta(seconds=1)


@pytest.mark.parametrize("currency, exponent", [("JPY", 0), ("KRW", 0), ("USD", 2), ("CAD", 2), ("EUR", 2),
                                                ("KWD", 3), ("BHD", 3), ("CLF", 4), (None, 2), ("jpy", 0)])
def test_iso_4217_exponents(currency, exponent):
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("amount, currency, cents", [
    ("1234.5", "JPY", 1235),    # yen have no minor unit: half a yen rounds up
    ("1234.4", "JPY", 1234),
    ("1.2345", "KWD", 1235),    # 3 decimals: fils
    ("12.345", "CAD", 1235),
    ("12.345", None, 1235),     # no currency: 2 decimals, the old behaviour
    ("0.000500", "USD", 0),
])
def test_to_cents_rounds_half_up_once_at_the_currency_exponent(amount, currency, cents):
    assert to_cents(D(amount), currency) == cents


@pytest.mark.parametrize("cents, currency, amount", [(1000, "JPY", "1000"), (1000, "USD", "10"),
                                                     (1000, "KWD", "1"), (1000, None, "10")])
def test_from_cents(cents, currency, amount):
    assert from_cents(cents, currency) == D(amount)


def _plan(client, currency, amount_cents, charge_amount="1.5", min_amount_cents=0):
    metric = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "Calls", "code": f"calls_{currency}", "aggregation_type": "count_agg"}}, format="json")
    assert metric.status_code == 200, metric.content
    response = client.post("/api/v1/plans", {"plan": {
        "name": currency, "code": f"plan_{currency}", "interval": "monthly", "amount_cents": amount_cents,
        "amount_currency": currency, "charges": [{
            "billable_metric_id": metric.json()["billable_metric"]["lago_id"], "charge_model": "standard",
            "properties": {"amount": charge_amount}, "min_amount_cents": min_amount_cents}]}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["plan"]


@pytest.mark.django_db
@pytest.mark.parametrize("currency, amount_cents, stored", [("JPY", 1000, "1000"), ("USD", 1000, "10"),
                                                            ("KWD", 1500, "1.5")])
def test_plan_amount_cents_are_minor_units_of_the_plan_currency(api_client, currency, amount_cents, stored):
    """amount_cents 1000 is 1000 yen, 10.00 dollars; 1500 fils are 1.500 dinars."""
    plan = _plan(api_client, currency, amount_cents, min_amount_cents=amount_cents)
    assert Plan.objects.get(code=f"plan_{currency}").amount == D(stored)
    assert plan["amount_cents"] == amount_cents
    assert plan["charges"][0]["min_amount_cents"] == amount_cents
    assert api_client.get(f"/api/v1/plans/plan_{currency}").json()["plan"]["amount_cents"] == amount_cents


@pytest.mark.django_db
def test_current_usage_in_yen_has_no_minor_unit(api_client):
    """3 calls at JPY 1.5 = 4.5 yen -> amount_cents 5 (whole yen, half up); in CAD it would be 450."""
    _plan(api_client, "JPY", 0)
    create_subscription(api_client, external_id="sub_jpy", customer="cus_jpy", plan_code="plan_JPY")
    start = Subscription.objects.get(external_id="sub_jpy").current_period_start
    for n in range(3):
        response = api_client.post("/api/v1/events", {"event": {
            "transaction_id": f"y-{n}", "external_subscription_id": "sub_jpy", "code": "calls_JPY",
            "timestamp": int(start.timestamp())}}, format="json")
        assert response.status_code == 200, response.content
    rating.rate_open_windows(now=start + SECOND)
    usage = api_client.get("/api/v1/customers/cus_jpy/current_usage?external_subscription_id=sub_jpy").json()
    body = usage["customer_usage"]
    assert (body["currency"], body["amount_cents"], body["charges_usage"][0]["amount_cents"]) == ("JPY", 5, 5)
    subscription = api_client.get("/api/v1/subscriptions/sub_jpy").json()["subscription"]
    assert subscription["plan_amount_currency"] == "JPY"


@pytest.mark.django_db
def test_a_customer_subscribes_only_in_its_currency(api_client):
    """cus_1 (no currency, as Lago) takes CAD from its first plan; a USD plan is then refused with
    Lago's currencies_does_not_match, by the API too. A fresh customer takes the currency of its first plan."""
    create_catalogue(api_client)  # CAD plan "starter"
    usd = _plan(api_client, "USD", 1000)
    api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1"}}, format="json")
    assert api_client.get("/api/v1/customers/cus_1").json()["customer"]["currency"] is None
    create_subscription(api_client)
    assert api_client.get("/api/v1/customers/cus_1").json()["customer"]["currency"] == "CAD"
    account = AccountLink.objects.get(external_id="cus_1")
    usd_plan = Plan.objects.get(code=usd["code"])
    assert check_currency_compatible(account=account, plan=Plan.objects.get(code="starter")) is False
    with pytest.raises(ValidationFailed) as refused:
        check_currency_compatible(account=account, plan=usd_plan)
    assert refused.value.error_details == {"currency": ["currencies_does_not_match"]}
    response = api_client.post("/api/v1/subscriptions", {"subscription": {
        "external_customer_id": "cus_1", "plan_code": usd["code"], "external_id": "sub_usd"}}, format="json")
    assert response.status_code == 422 and response.json()["error_details"] == {
        "currency": ["currencies_does_not_match"]}

    response = api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_new"}}, format="json")
    assert response.status_code == 200, response.content
    fresh = AccountLink.objects.get(external_id="cus_new")
    assert check_currency_compatible(account=fresh, plan=usd_plan) is True  # takes USD
