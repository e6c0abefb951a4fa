from decimal import Decimal

import pytest

from billing_kit.formatting import to_cents
from odoo_bridge.pricing import decimal_from_odoo, usage_line_pricing


def test_sub_cent_rate_falls_back_to_quantity_one_at_the_pre_rated_amount():
    pricing = usage_line_pricing(billable_units=Decimal("1000"), amount=Decimal("7.500000"),
                                 unit_rate=Decimal("0.0075"), price_digits=2, quantity_digits=3)
    assert (pricing.quantity, pricing.price_unit, pricing.pre_rated) == (Decimal(1), Decimal("7.50"), True)
    assert "price digits" in pricing.reason


def test_rate_that_fits_is_pushed_as_quantity_times_unit_price():
    pricing = usage_line_pricing(billable_units=Decimal("1000"), amount=Decimal("7.500000"),
                                 unit_rate=Decimal("0.0075"), price_digits=4, quantity_digits=3)
    assert (pricing.quantity, pricing.price_unit, pricing.pre_rated) == (Decimal("1000.000"), Decimal("0.0075"),
                                                                         False)
    assert pricing.total == Decimal("7.5")


@pytest.mark.parametrize("rate", [None, Decimal("0.10")])
def test_non_unit_or_mismatched_amounts_are_pre_rated(rate):
    pricing = usage_line_pricing(billable_units=Decimal("3"), amount=Decimal("12.345678"), unit_rate=rate,
                                 price_digits=2, quantity_digits=3)
    assert pricing.pre_rated and pricing.price_unit == Decimal("12.35")


def test_odoo_floats_become_exact_decimals_and_cents():
    assert decimal_from_odoo(61.34) == Decimal("61.34")
    assert decimal_from_odoo(False) == Decimal("0.00")
    assert to_cents(Decimal("61.345")) == 6135
    assert to_cents(decimal_from_odoo(0.1 + 0.2)) == 30
