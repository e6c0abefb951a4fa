"""Every Lago catalogue field works or is refused with ``not_supported``: nothing accepted and
ignored. Built here: metric ``rounding_function``/``rounding_precision`` and charge
``min_amount_cents``; graduated/volume at 0 units and free units as Lago."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from metering import rating
from metering.models import BillableMetric, Plan, RatedUsage, Subscription
from tests.api.conftest import create_subscription

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)
METRIC = {"name": "GB", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb"}
PLAN = {"name": "Pro", "code": "pro", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD"}


def error_details(response, status=422):
    assert response.status_code == status, response.content
    return response.json()["error_details"]


def make_metric(client, **fields):
    response = client.post("/api/v1/billable_metrics", {"billable_metric": {**METRIC, **fields}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["billable_metric"]


def make_plan(client, charge, **fields):
    response = client.post("/api/v1/plans", {"plan": {**PLAN, **fields, "charges": [charge]}}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["plan"]


def rate_window(client, values, *, code="gb"):
    """Subscribe to ``pro``, send ``values`` in the open window, rate it; the row per charge code."""
    create_subscription(client, external_id="sub_f", plan_code="pro")
    start = Subscription.objects.get(external_id="sub_f").current_period_start
    for n, value in enumerate(values):
        response = client.post("/api/v1/events", {"event": {
            "transaction_id": f"f-{n}", "external_subscription_id": "sub_f", "code": code,
            "timestamp": int(start.timestamp()), "properties": {code: value}}}, format="json")
        assert response.status_code == 200, response.content
    rating.rate_open_windows(now=start + SECOND)
    return {r.charge.metric.code: r for r in RatedUsage.objects.filter(subscription__external_id="sub_f")}


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize("field, value", [
    ("bill_fixed_charges_monthly", True),
    ("usage_thresholds", [{"amount_cents": 10000}]),
    ("fixed_charges", [{"add_on_id": "x"}]), ("tax_codes", ["vat"]),
])
def test_plan_fields_not_built_are_refused(api_client, field, value):
    response = api_client.post("/api/v1/plans", {"plan": {**PLAN, field: value}}, format="json")
    assert error_details(response) == {field: ["not_supported"]}
    assert not Plan.objects.exists()


@pytest.mark.parametrize("field, value", [
    ("prorated", True), ("invoiceable", False), ("regroup_paid_fees", "invoice"), ("accepts_target_wallet", True),
    ("filters", [{"values": {"region": ["eu"]}, "properties": {"amount": "1"}}]), ("tax_codes", ["vat"]),
    ("applied_pricing_unit", {"code": "credits", "conversion_rate": "0.5"}), ("pay_in_advance", True),
])
def test_charge_fields_not_built_are_refused(api_client, field, value):
    metric = make_metric(api_client)
    charge = {"billable_metric_id": metric["lago_id"], "charge_model": "standard", "properties": {"amount": "1"},
              field: value}
    response = api_client.post("/api/v1/plans", {"plan": {**PLAN, "charges": [charge]}}, format="json")
    details = error_details(response)
    # pay_in_advance is checked by the service; the others by the input schema (charge index 0).
    assert details in ({field: ["not_supported"]}, {"charges": {"0": {field: ["not_supported"]}}}), details
    assert not Plan.objects.exists()


def test_a_charge_code_other_than_its_metric_code_is_refused(api_client):
    metric = make_metric(api_client)
    charge = {"billable_metric_id": metric["lago_id"], "charge_model": "standard", "properties": {"amount": "1"}}
    response = api_client.post("/api/v1/plans", {"plan": {**PLAN, "charges": [{**charge, "code": "other"}]}},
                               format="json")
    assert error_details(response) == {"code": ["not_supported"]}
    assert make_plan(api_client, {**charge, "code": "gb"})["charges"][0]["code"] == "gb"


def test_metric_weighted_interval_is_refused(api_client):
    response = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        **METRIC, "weighted_interval": "seconds"}}, format="json")
    assert error_details(response) == {"weighted_interval": ["not_supported"]}
    assert not BillableMetric.objects.exists()


def test_neutral_values_are_accepted(api_client):
    metric = make_metric(api_client, weighted_interval=None, expression="", filters=[])
    plan = make_plan(api_client, {
        "billable_metric_id": metric["lago_id"], "charge_model": "standard", "properties": {"amount": "1"},
        "invoiceable": True, "prorated": False, "regroup_paid_fees": None, "accepts_target_wallet": False,
        "filters": [], "tax_codes": [], "applied_pricing_unit": None, "min_amount_cents": 0,
    }, bill_charges_monthly=False, minimum_commitment=None, usage_thresholds=[], fixed_charges=[], tax_codes=[],
        metadata=None, cascade_updates=True)
    assert plan["charges"][0]["min_amount_cents"] == 0


# --------------------------------------------------------------------------- built


@pytest.mark.parametrize("function, precision, values, units", [
    # 1.234 + 1.111 = 2.345
    ("round", 2, ["1.234", "1.111"], "2.35"),
    ("ceil", 0, ["1.234", "1.111"], "3"),
    ("floor", 1, ["1.234", "1.111"], "2.3"),
    ("round", None, ["1.234", "1.111"], "2"),  # precision null rounds to an integer
    (None, None, ["1.234", "1.111"], "2.345"),
])
def test_metric_rounding_applies_to_the_window_units(api_client, function, precision, values, units):
    """gb at 2.00 per unit: round(2.345, 2) = 2.35 units -> 4.70."""
    metric = make_metric(api_client, rounding_function=function, rounding_precision=precision)
    assert (metric["rounding_function"], metric["rounding_precision"]) == (function, precision)
    make_plan(api_client, {"billable_metric_id": metric["lago_id"], "charge_model": "standard",
                           "properties": {"amount": "2"}})
    row = rate_window(api_client, values)["gb"]
    assert row.units == D(units)
    assert row.amount == D(units) * 2


def test_rounding_function_must_be_one_of_lagos(api_client):
    response = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        **METRIC, "rounding_function": "truncate"}}, format="json")
    assert error_details(response) == {"rounding_function": ["value_is_invalid"]}


@pytest.mark.parametrize("values, expected", [
    ([], "10"),       # no usage: the whole minimum (a 10.00 true-up)
    (["3"], "10"),    # 3.00 of usage + 7.00 true-up
    (["12"], "12"),   # above the minimum: usage only
])
def test_charge_min_amount_is_the_least_a_window_bills(api_client, values, expected):
    """gb at 1.00 per unit with min_amount_cents 1000 (CAD 10.00)."""
    metric = make_metric(api_client)
    plan = make_plan(api_client, {"billable_metric_id": metric["lago_id"], "charge_model": "standard",
                                  "properties": {"amount": "1"}, "min_amount_cents": 1000})
    assert plan["charges"][0]["min_amount_cents"] == 1000
    rows = rate_window(api_client, values)
    assert rows["gb"].amount == D(expected)
    usage = api_client.get("/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_f").json()
    assert usage["customer_usage"]["charges_usage"][0]["amount_cents"] == int(D(expected) * 100)


GRADUATED = {"graduated_ranges": [
    {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "5"},
    {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"}]}
VOLUME = {"volume_ranges": [
    {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
    {"from_value": 101, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"}]}


@pytest.mark.parametrize("model, properties", [("graduated", GRADUATED), ("volume", VOLUME)])
def test_tiers_at_zero_units_bill_nothing_as_lago(api_client, model, properties):
    """Lago's GraduatedService adds a tier's flat amount "unless units.zero?" and VolumeService
    returns 0 "if units.zero?": a window without usage bills no flat amount."""
    metric = make_metric(api_client)
    make_plan(api_client, {"billable_metric_id": metric["lago_id"], "charge_model": model,
                           "properties": properties})
    assert rate_window(api_client, ["0"]) == {}  # amount 0: no row
    usage = api_client.get("/api/v1/customers/cus_1/current_usage?external_subscription_id=sub_f").json()
    assert usage["customer_usage"]["charges_usage"][0]["amount_cents"] == 0


def test_volume_free_units_never_raise_the_bill(api_client):
    """110 GB on the volume ranges above with 10 free units: the tier is the one of the 110
    aggregated units (tier 2, 1.00 per unit) and the 100 billable units cost 100.00 — not
    the 100 x 2.00 + 1.00 = 201.00 of tier 1, more than 110 GB without free units (110.00)."""
    metric = make_metric(api_client)
    make_plan(api_client, {"billable_metric_id": metric["lago_id"], "charge_model": "volume",
                           "properties": {**VOLUME, "free_units": 10}})
    row = rate_window(api_client, ["110"])["gb"]
    assert (row.units, row.billable_units, row.amount) == (D("110"), D("100"), D("100"))
