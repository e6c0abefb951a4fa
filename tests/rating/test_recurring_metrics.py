"""Recurring metrics (``recurring: true``) carry their value across windows, as Lago's:
a sum is a running total, a unique count the values active in the window. Driven through
the HTTP API (metric, plan, subscription, events) and the rating run."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from metering import rating
from metering.models import RatedUsage, Subscription
from tests.api.conftest import create_subscription

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)


def setup_plan(client, *, code, aggregation, field, recurring, amount):
    response = client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": code, "code": code, "aggregation_type": aggregation, "field_name": field,
        "recurring": recurring}}, format="json")
    assert response.status_code == 200, response.content
    metric_id = response.json()["billable_metric"]["lago_id"]
    response = client.post("/api/v1/plans", {"plan": {
        "name": code, "code": f"plan_{code}", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric_id, "charge_model": "standard",
                     "properties": {"amount": amount}}]}}, format="json")
    assert response.status_code == 200, response.content
    create_subscription(client, external_id="sub_r", plan_code=f"plan_{code}")


class Windows:
    """Sends events into the subscription's open window and moves to the next one."""

    def __init__(self, client, code):
        self.client, self.code, self.n = client, code, 0

    @property
    def start(self):
        return Subscription.objects.get(external_id="sub_r").current_period_start

    def send(self, *properties, at=None):
        for props in properties:
            self.n += 1
            response = self.client.post("/api/v1/events", {"event": {
                "transaction_id": f"r-{self.n}", "external_subscription_id": "sub_r", "code": self.code,
                "timestamp": int(((at or self.start) + self.n * SECOND).timestamp()), "properties": props}},
                format="json")
            assert response.status_code == 200, response.content

    def next(self):
        """Close the open window (final rating) and rate the new one."""
        end = Subscription.objects.get(external_id="sub_r").current_period_end
        rating.rate_open_windows(now=end + SECOND)

    def rated(self):
        """[(units, amount)] of every window, oldest first (rated now for the open one)."""
        rating.rate_open_windows(now=self.start + HOUR)
        return [(r.units, r.amount) for r in RatedUsage.objects.filter(
            subscription__external_id="sub_r").order_by("window_start")]


def test_recurring_sum_is_a_running_total_across_windows(api_client):
    """Storage in GB at 1.00 per GB per window.
    W1: +10, +5 -> 15 (15.00). W2: +3 -> 18 (18.00). W3: nothing -> still 18 (18.00).
    W4: -8 -> 10 (10.00). Without recurring W2 would bill 3, W3 nothing, W4 nothing."""
    setup_plan(api_client, code="storage", aggregation="sum_agg", field="gb", recurring=True, amount="1")
    w = Windows(api_client, "storage")
    w.send({"gb": 10}, {"gb": 5})
    assert w.rated() == [(D("15"), D("15"))]
    w.next()
    w.send({"gb": 3})
    assert w.rated()[-1] == (D("18"), D("18"))
    w.next()
    assert w.rated()[-1] == (D("18"), D("18"))
    w.next()
    w.send({"gb": -8})
    assert w.rated() == [(D("15"), D("15")), (D("18"), D("18")), (D("18"), D("18")), (D("10"), D("10"))]
    # current_usage shows the carried total too.
    usage = api_client.get("/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_r").json()
    assert D(usage["customer_usage"]["charges_usage"][0]["units"]) == D("10")
    assert usage["customer_usage"]["charges_usage"][0]["amount_cents"] == 1000


def test_a_non_recurring_sum_still_resets_every_window(api_client):
    setup_plan(api_client, code="transfer", aggregation="sum_agg", field="gb", recurring=False, amount="1")
    w = Windows(api_client, "transfer")
    w.send({"gb": 10})
    w.next()
    w.send({"gb": 3})
    assert w.rated() == [(D("10"), D("10")), (D("3"), D("3"))]


def test_recurring_unique_count_bills_the_values_active_in_each_window(api_client):
    """Seats at 2.00 per seat per window, not prorated (Lago's non-prorated recurring unique count):
    W1: add a, add b -> {a, b} = 2 seats (4.00).
    W2: remove a, add c -> a was active at the window's start, so {a, b, c} = 3 (6.00).
    W3: nothing -> {b, c} = 2 (4.00).  W4: add a again, remove b -> {a, b, c} = 3 (6.00).
    W5: nothing -> {a, c} = 2 (4.00)."""
    setup_plan(api_client, code="seats", aggregation="unique_count_agg", field="user", recurring=True, amount="2")
    w = Windows(api_client, "seats")
    w.send({"user": "a"}, {"user": "b"})
    w.next()
    w.send({"user": "a", "operation_type": "remove"}, {"user": "c", "operation_type": "add"})
    w.next()
    w.next()
    w.send({"user": "a"}, {"user": "b", "operation_type": "remove"})
    w.next()
    assert w.rated() == [(D("2"), D("4")), (D("3"), D("6")), (D("2"), D("4")), (D("3"), D("6")), (D("2"), D("4"))]


def test_a_value_added_and_removed_inside_one_window_is_billed_for_it_once(api_client):
    """W1: add a, remove a, add a, remove a -> a was active: 1 seat. W2: nothing -> 0 (no row)."""
    setup_plan(api_client, code="seats", aggregation="unique_count_agg", field="user", recurring=True, amount="2")
    w = Windows(api_client, "seats")
    w.send({"user": "a"}, {"user": "a", "operation_type": "remove"}, {"user": "a"},
           {"user": "a", "operation_type": "remove"})
    w.next()
    assert w.rated() == [(D("1"), D("2"))]


def test_a_non_recurring_unique_count_ignores_removes(api_client):
    """Non-recurring: the distinct values added in the window; a ``remove`` event adds nothing.
    W1: add a, remove b -> 1. W2: remove a -> 0 (nothing is carried, nothing added)."""
    setup_plan(api_client, code="users", aggregation="unique_count_agg", field="user", recurring=False, amount="2")
    w = Windows(api_client, "users")
    w.send({"user": "a"}, {"user": "b", "operation_type": "remove"})
    w.next()
    w.send({"user": "a", "operation_type": "remove"})
    assert w.rated() == [(D("1"), D("2"))]
