"""Window closing seen from the HTTP API: a frozen window refuses its late events."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from metering import rating
from metering.models import RatedUsage, UsageEvent
from tests.rating.conftest import T0, T1, T2

pytestmark = pytest.mark.django_db

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": 0})


def post(client, sub, tx, at, value):
    return client.post("/api/v1/events", {"event": {
        "transaction_id": tx, "external_subscription_id": sub.external_id, "code": "cpu_seconds",
        "timestamp": str(int(at.timestamp())), "properties": {"value": str(value)},
    }}, format="json")


def test_closed_window_refuses_late_events_with_period_closed(api_client, catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan, external_id="dep-1")

    assert post(api_client, sub, "a", T1 - timedelta(seconds=1), 3600).status_code == 200
    assert post(api_client, sub, "b", T1, 7200).status_code == 200  # next window: accepted early

    rating.rate_open_windows(now=T1 + timedelta(minutes=1))
    march = RatedUsage.objects.get(subscription=sub, window_start=T0)
    assert (march.state, march.amount) == ("frozen", D("0.0075"))

    late = post(api_client, sub, "c", T1 - timedelta(seconds=1), 3600)
    assert late.status_code == 422
    assert late.json()["error_details"] == {"timestamp": ["period_closed"]}
    assert not UsageEvent.objects.filter(transaction_id="c").exists()
    # the open window keeps taking usage, and it is billed there
    assert post(api_client, sub, "d", T1 + timedelta(days=2), 3600).status_code == 200
    rating.rate_open_windows(now=T1 + timedelta(days=3))
    april = RatedUsage.objects.get(subscription=sub, window_start=T1)
    assert (april.state, april.amount, april.window_end) == ("open", D("0.0225"), T2)
    march.refresh_from_db()
    assert march.amount == D("0.0075")


def test_current_usage_uses_the_rating_numbers(api_client, catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan, external_id="dep-1")
    for tx, seconds in (("a", 1800), ("b", 3599)):
        assert post(api_client, sub, tx, T0 + timedelta(days=1), seconds).status_code == 200
    customer_id = sub.account_link.external_id
    response = api_client.get(f"/api/v1/customers/{customer_id}/current_usage",
                              {"external_subscription_id": "dep-1"})
    assert response.status_code == 200, response.content
    usage = response.json()["customer_usage"]
    [charge] = usage["charges_usage"]
    expected = rating.compute_usage(subscription=sub, window_start=T0, window_end=T1)
    assert D(charge["units"]) == expected.charges[0].units == D("5399")
    # 5,399 s x 0.0075 / 3,600 = 0.011247916... -> 0.011248 -> 1 cent, rounded once
    assert charge["amount_cents"] == expected.charges[0].amount_cents == 1
    assert charge["events_count"] == 2
