"""Hypothesis on the database: rating a window equals the sum of rating its events."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering import rating
from metering.models import RatedUsage
from metering.pricing import parse_charge_properties, price_units
from tests.rating.conftest import T0, T1

pytestmark = pytest.mark.django_db
_plans = itertools.count()

values_st = st.lists(
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
    min_size=0, max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    amount=st.decimals(min_value=0, max_value=100, places=3),
    values=values_st,
    offsets=st.lists(st.integers(min_value=0, max_value=31 * 86400 - 1), min_size=25, max_size=25),
)
def test_sum_agg_window_equals_sum_of_its_events(catalogue, amount, values, offsets):
    # Standard pricing without free units is linear; 3 dp x 3 dp stays within
    # 6 dp, so no rounding can separate the two sides.
    props = {"amount": str(amount)}
    plan = catalogue.plan(f"p-{next(_plans)}", [("m", "sum_agg", "standard", props)])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "m", [(T0 + timedelta(seconds=o), v) for v, o in zip(values, offsets)])
    terms = parse_charge_properties(charge_model="standard", properties=props)
    per_event = sum((price_units(terms=terms, units=v).amount for v in values), D(0))

    usage = rating.compute_usage(subscription=sub, window_start=T0, window_end=T1)
    assert usage.charges[0].amount == per_event
    assert usage.charges[0].units == sum(values, D(0))
    assert usage.charges[0].events_count == len(values)

    rating.rate_subscription(subscription_id=sub.id, now=T0 + timedelta(days=1))
    row = RatedUsage.objects.filter(subscription=sub).first()
    assert (row.amount if row else D(0)) == per_event
