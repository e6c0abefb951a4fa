"""Lago's projected usage (``GET /customers/{id}/projected_usage``): the open window's usage
so far, projected linearly to the window's end by the rating engine's own pricing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.utils import timezone

from metering import windows
from metering.models import Subscription
from metering.rating import compute_projected_usage, elapsed_ratio

from .conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db


def send(api_client, transaction_id: str, seconds: int) -> None:
    response = api_client.post("/api/v1/events", {"event": {
        "transaction_id": transaction_id, "external_subscription_id": "sub_1", "code": "cpu_seconds",
        "timestamp": int(timezone.now().timestamp()), "properties": {"cpu_seconds": seconds}}}, format="json")
    assert response.status_code == 200, response.content


@pytest.fixture
def metered(api_client):
    # 2.00 per unit past 5 free units, billed monthly on the calendar.
    create_catalogue(api_client, amount="2", unit_batch=1, free_units=5)
    create_subscription(api_client)
    send(api_client, "t1", 4)
    send(api_client, "t2", 6)
    return Subscription.objects.get(external_id="sub_1")


def test_the_engine_projects_the_units_to_the_window_end_and_prices_them(metered):
    start, end = metered.current_period_start, metered.current_period_end
    days = (end - start).days
    fifth_day = start + timedelta(days=4, hours=12)
    projection = compute_projected_usage(subscription=metered, window_start=start, window_end=end, now=fifth_day)
    assert projection.ratio == Decimal(5) / Decimal(days)
    (charge,) = projection.charges
    assert charge.usage.units == 10 and charge.usage.amount == Decimal("10")  # (10 - 5 free) x 2
    expected_units = (Decimal(10) * days / 5).quantize(Decimal("0.01"))
    assert charge.projected_units == expected_units
    assert charge.projected_amount == (expected_units - 5) * 2  # priced with the free units, as billed
    # On the window's last day (and after), the projection is the usage itself.
    last_day = end - timedelta(hours=1)
    settled = compute_projected_usage(subscription=metered, window_start=start, window_end=end, now=last_day)
    assert settled.ratio == 1 and settled.charges[0].projected_amount == Decimal("10")


def test_elapsed_ratio_counts_days_on_the_subscription_calendar():
    tz = windows.zone("America/Toronto")
    start = datetime(2026, 3, 1, 5, tzinfo=dt_timezone.utc)  # midnight in Toronto
    end = datetime(2026, 4, 1, 4, tzinfo=dt_timezone.utc)  # DST began on 8 March
    # 2 March 03:00 UTC is still 1 March in Toronto: day 1 of 31.
    assert elapsed_ratio(window_start=start, window_end=end, now=datetime(
        2026, 3, 2, 3, tzinfo=dt_timezone.utc), tz=tz) == Decimal(1) / 31
    assert elapsed_ratio(window_start=start, window_end=end, now=start - timedelta(days=1), tz=tz) == 0


def test_projected_usage_over_http(api_client, metered):
    response = api_client.get("/api/v1/customers/cus_1/projected_usage", {"external_subscription_id": "sub_1"})
    assert response.status_code == 200, response.content
    body = response.json()["customer_projected_usage"]
    start, end = metered.current_period_start, metered.current_period_end
    tz = windows.zone(metered.billing_timezone)
    first, today = windows.local_date(start, tz), windows.local_date(timezone.now(), tz)
    last = windows.local_date(end - timedelta(seconds=1), tz)
    ratio = Decimal(1) if today >= last else Decimal((today - first).days + 1) / ((last - first).days + 1)
    projected_units = (Decimal(10) / ratio).quantize(Decimal("0.01"))
    projected_cents = int((projected_units - 5) * 2 * 100)
    (charge,) = body["charges_usage"]
    assert Decimal(charge["units"]) == 10 and charge["amount_cents"] == 1000
    assert Decimal(charge["projected_units"]) == projected_units
    assert charge["projected_amount_cents"] == projected_cents == body["projected_amount_cents"]
    assert body["amount_cents"] == 1000 and body["currency"] == "CAD"
    # The filter of current_usage applies; another customer's or an unknown subscription: Lago's answers.
    only = api_client.get("/api/v1/customers/cus_1/projected_usage",
                          {"external_subscription_id": "sub_1", "billable_metric_code": "nope"}).json()
    assert only["customer_projected_usage"]["charges_usage"] == []
    missing = api_client.get("/api/v1/customers/cus_1/projected_usage", {"external_subscription_id": "sub_9"})
    assert (missing.status_code, missing.json()["code"]) == (405, "no_active_subscription")
    assert api_client.get("/api/v1/customers/cus_9/projected_usage",
                          {"external_subscription_id": "sub_1"}).json()["code"] == "customer_not_found"
