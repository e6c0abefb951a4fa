"""Lago's plan ``minimum_commitment`` (issue #12): stored and rendered on the plan, and the
true-up (a ``commitment`` PlanFee) written when a window closes below it.

Driven through the HTTP API and the rating task with the clock set by the test. Lago's rule
(``Commitments::Minimum::CalculateTrueUpFeeService``): true-up = commitment x days of the
window / days of the period - (the window's base fee + its usage), when positive. Every
figure is worked by hand in the comments.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from metering.models import PlanFee

from .test_lago_rules import _one_rating_task, call, clock, fees, make_plan, rate, subscribe, units, utc  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def commit(client, code: str, body) -> dict:
    response = client.put(f"/api/v1/plans/{code}", {"plan": {"minimum_commitment": body}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["plan"]


def true_ups(lago_id: str) -> list[tuple]:
    return [f for f in fees(lago_id) if f[0] == "commitment"]


def test_the_plan_stores_and_renders_its_minimum_commitment_as_lago(api_client, clock):
    make_plan(api_client, "basic", amount_cents=1000)
    assert api_client.get("/api/v1/plans/basic").json()["plan"]["minimum_commitment"] is None
    plan = commit(api_client, "basic", {"amount_cents": 5000, "invoice_display_name": "Monthly minimum"})
    rendered = plan["minimum_commitment"]
    assert {k: rendered[k] for k in ("plan_code", "amount_cents", "invoice_display_name", "interval")} == {
        "plan_code": "basic", "amount_cents": 5000, "invoice_display_name": "Monthly minimum", "interval": "monthly"}
    assert rendered["lago_id"] and rendered["created_at"] and rendered["updated_at"]
    # The fields sent change; the commitment keeps its identity.
    renamed = commit(api_client, "basic", {"invoice_display_name": "Minimum"})["minimum_commitment"]
    assert (renamed["lago_id"], renamed["amount_cents"], renamed["invoice_display_name"]) == (
        rendered["lago_id"], 5000, "Minimum")
    listed = api_client.get("/api/v1/plans").json()["plans"]
    assert [p["minimum_commitment"]["amount_cents"] for p in listed] == [5000]
    # null (or {}) removes it, as Lago's Plans::UpdateService does.
    assert commit(api_client, "basic", None)["minimum_commitment"] is None


def test_a_minimum_commitment_needs_an_amount_and_refuses_tax_codes(api_client):
    make_plan(api_client, "basic", amount_cents=1000)
    missing = api_client.put("/api/v1/plans/basic", {"plan": {"minimum_commitment": {"invoice_display_name": "x"}}},
                             format="json")
    assert missing.status_code == 422
    assert missing.json()["error_details"] == {"minimum_commitment": {"amount_cents": ["value_is_mandatory"]}}
    taxed = api_client.put("/api/v1/plans/basic", {"plan": {"minimum_commitment": {
        "amount_cents": 100, "tax_codes": ["hst"]}}}, format="json")
    assert taxed.status_code == 422
    assert taxed.json()["error_details"] == {"minimum_commitment": {"tax_codes": ["not_supported"]}}
    negative = api_client.put("/api/v1/plans/basic", {"plan": {"minimum_commitment": {"amount_cents": -1}}},
                              format="json")
    assert negative.status_code == 422
    assert api_client.get("/api/v1/plans/basic").json()["plan"]["minimum_commitment"] is None


@pytest.mark.parametrize("pay_in_advance", [False, True])
def test_a_full_window_below_the_commitment_is_trued_up_to_it_and_one_above_is_not(
        api_client, clock, pay_in_advance):
    # 10.00 a month, 1.00 a call, commitment 50.00, calendar from Jan 1.
    # January: base fee 10.00 + 5 calls 5.00 = 15.00 < 50.00: true-up 50.00 - 15.00 = 35.00
    # (paid in advance, the fee counted is January's, paid when January opened; not February's).
    # February: 10.00 + 45 calls 45.00 = 55.00 >= 50.00: no true-up.
    make_plan(api_client, "basic", amount_cents=1000, pay_in_advance=pay_in_advance)
    commit(api_client, "basic", {"amount_cents": 5000})
    sub = subscribe(api_client, "basic")
    for n in range(5):
        call(api_client, utc(2026, 1, 10), n)
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    assert true_ups(sub["lago_id"]) == [("commitment", utc(2026, 1, 1), utc(2026, 2, 1), Decimal(1),
                                         Decimal("35.000000"))]
    for n in range(45):
        call(api_client, utc(2026, 2, 10), 100 + n)
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    assert len(true_ups(sub["lago_id"])) == 1
    # Rating again changes nothing: one true-up per window.
    rate(clock, utc(2026, 3, 1, 0, 0, 10))
    assert PlanFee.objects.filter(subscription_id=sub["lago_id"], kind="commitment").count() == 1


def test_a_partial_first_window_prorates_the_commitment_by_lagos_day_count(api_client, clock):
    # 31.00 a month, commitment 62.00, calendar, started Jan 20 15:00: Jan 20-31 is 12 of 31
    # days. Base fee 31 x 12/31 = 12.00; commitment 62 x 12/31 = 24.00; 2 calls = 2.00.
    # True-up 24.00 - (12.00 + 2.00) = 10.00, units 12/31.
    make_plan(api_client, "basic", amount_cents=3100)
    commit(api_client, "basic", {"amount_cents": 6200})
    clock.now = utc(2026, 1, 20, 15)
    sub = subscribe(api_client, "basic")
    call(api_client, utc(2026, 1, 21), 1)
    call(api_client, utc(2026, 1, 22), 2)
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    assert true_ups(sub["lago_id"]) == [("commitment", utc(2026, 1, 20, 15), utc(2026, 2, 1), units(12, 31),
                                         Decimal("10.000000"))]


def test_a_termination_prorates_the_commitment_through_the_termination_date(api_client, clock):
    # 31.00 a month, commitment 62.00, calendar from Jan 1, terminated Jan 10 10:00, no usage.
    # Lago counts Jan 1-10 (the termination date included): 10 of 31 days.
    # Base fee 31 x 10/31 = 10.00; commitment 62 x 10/31 = 20.00; true-up 20.00 - 10.00 = 10.00.
    make_plan(api_client, "basic", amount_cents=3100)
    commit(api_client, "basic", {"amount_cents": 6200})
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 10, 10)
    assert api_client.delete("/api/v1/subscriptions/sub_1").status_code == 200
    assert fees(sub["lago_id"]) == [
        ("commitment", utc(2026, 1, 1), utc(2026, 1, 10, 10), units(10, 31), Decimal("10.000000")),
        ("subscription", utc(2026, 1, 1), utc(2026, 1, 10, 10), units(10, 31), Decimal("10.000000"))]


def test_a_commitment_change_applies_from_the_next_window(api_client, clock):
    # 10.00 a month, no usage. Commitment 50.00 when January opens; on Jan 15 it becomes 80.00.
    # January keeps 50.00: true-up 50.00 - 10.00 = 40.00. February: 80.00 - 10.00 = 70.00.
    # Removed on Feb 10: February still owes its 70.00; March (none) owes nothing.
    make_plan(api_client, "basic", amount_cents=1000)
    commit(api_client, "basic", {"amount_cents": 5000})
    sub = subscribe(api_client, "basic")
    clock.now = utc(2026, 1, 15)
    commit(api_client, "basic", {"amount_cents": 8000})
    rate(clock, utc(2026, 2, 1, 0, 0, 5))
    clock.now = utc(2026, 2, 10)
    commit(api_client, "basic", None)
    rate(clock, utc(2026, 3, 1, 0, 0, 5))
    rate(clock, utc(2026, 4, 1, 0, 0, 5))
    assert [(f[1], f[4]) for f in true_ups(sub["lago_id"])] == [(utc(2026, 1, 1), Decimal("40.000000")),
                                                                (utc(2026, 2, 1), Decimal("70.000000"))]
