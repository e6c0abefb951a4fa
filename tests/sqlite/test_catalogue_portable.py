"""The portable (embedded SQLite) rating path honours recurring metrics, metric rounding,
charge minimums and the window terms kept by a mid-window price change, as PostgreSQL does
(tests/rating/test_recurring_metrics.py, tests/api/test_catalogue_*.py)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from metering import rating
from metering.models import RatedUsage, Subscription
from tests.api.conftest import create_subscription

pytestmark = pytest.mark.django_db(transaction=True)

SECOND = timedelta(seconds=1)


def _setup(client, *, code, aggregation, field, amount, recurring=False, min_amount_cents=0, **metric):
    response = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": code, "code": code, "aggregation_type": aggregation, "field_name": field,
        "recurring": recurring, **metric}}, format="json")
    assert response.status_code == 200, response.content
    metric_id = response.json()["billable_metric"]["lago_id"]
    response = client.post("/api/v1/plans", {"plan": {
        "name": code, "code": "p", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric_id, "charge_model": "standard",
                     "properties": {"amount": amount}, "min_amount_cents": min_amount_cents}]}}, format="json")
    assert response.status_code == 200, response.content
    create_subscription(client, external_id="s", plan_code="p")
    return metric_id


def _send(client, code, n, props, when):
    response = client.post("/api/v1/events", {"event": {
        "transaction_id": f"t{n}", "external_subscription_id": "s", "code": code,
        "timestamp": int((when + n * SECOND).timestamp()), "properties": props}}, format="json")
    assert response.status_code == 200, response.content


def _window():
    sub = Subscription.objects.get(external_id="s")
    return sub.current_period_start, sub.current_period_end


def _rows():
    return [(r.units, r.amount) for r in RatedUsage.objects.filter(subscription__external_id="s")
            .order_by("window_start")]


def test_recurring_unique_count_and_sum_on_the_orm_path(api_client):
    """Seats at 2.00: W1 add a, b -> 2 (4.00); W2 remove a -> {a, b} active = 2 (4.00); W3 -> {b} = 1 (2.00)."""
    _setup(api_client, code="seats", aggregation="unique_count_agg", field="user", amount="2", recurring=True)
    start, end = _window()
    _send(api_client, "seats", 1, {"user": "a"}, start)
    _send(api_client, "seats", 2, {"user": "b"}, start)
    rating.rate_open_windows(now=end + SECOND)
    start, end = _window()
    _send(api_client, "seats", 3, {"user": "a", "operation_type": "remove"}, start)
    rating.rate_open_windows(now=end + SECOND)
    start, _ = _window()
    rating.rate_open_windows(now=start + SECOND)
    assert _rows() == [(D("2"), D("4")), (D("2"), D("4")), (D("1"), D("2"))]


def test_rounding_minimum_and_kept_terms_on_the_orm_path(api_client):
    """ceil(1.2 GB) = 2 at 1.00 with a 5.00 minimum -> 5.00. The price then becomes 3.00 mid-window:
    this window stays 5.00 (2 x 1.00 < 5.00); the next window's 2 GB cost 2 x 3.00 = 6.00."""
    metric_id = _setup(api_client, code="gb", aggregation="sum_agg", field="gb", amount="1",
                       rounding_function="ceil", min_amount_cents=500)
    charge = {"billable_metric_id": metric_id, "charge_model": "standard", "properties": {"amount": "1"},
              "min_amount_cents": 500}
    start, end = _window()
    _send(api_client, "gb", 1, {"gb": "1.2"}, start)
    rating.rate_open_windows(now=start + SECOND)
    assert _rows() == [(D("2"), D("5"))]
    charge["properties"] = {"amount": "3"}
    assert api_client.put("/api/v1/plans/p", {"plan": {"charges": [charge]}}, format="json").status_code == 200
    rating.rate_open_windows(now=end + SECOND)
    start, _ = _window()
    _send(api_client, "gb", 2, {"gb": "2"}, start)
    rating.rate_open_windows(now=start + 10 * SECOND)
    assert _rows() == [(D("2"), D("5")), (D("2"), D("6"))]
