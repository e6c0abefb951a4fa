"""Lago's coupon arithmetic on one invoice (coupons.discounts), figures worked by hand."""
from __future__ import annotations

from decimal import Decimal as D

from coupons.discounts import CouponTerms, Discount, invoice_coupon_discounts


def run(subtotal: str, *coupons: CouponTerms, currency: str = "CAD", exponent: int = 2) -> list[Discount]:
    return invoice_coupon_discounts(subtotal=D(subtotal), currency=currency, exponent=exponent, coupons=list(coupons))


def test_a_fixed_once_coupon_larger_than_the_invoice_carries_its_rest_to_the_next_invoice():
    # 50.00 once: invoice 15.00 takes 15.00 (35.00 left, still active); next invoice 60.00 takes 35.00, ends.
    first = run("15.00", CouponTerms("a", percentage=False, frequency="once", amount=D("50"), currency="CAD"))
    assert first == [Discount("a", D("15.00"), None, False)]
    second = run("60.00", CouponTerms("a", percentage=False, frequency="once", amount=D("50"), currency="CAD",
                                      spent=D("15.00")))
    assert second == [Discount("a", D("35.00"), None, True)]


def test_coupons_apply_oldest_first_on_what_the_previous_left_and_stop_at_zero():
    # 40.00: 25 % → 10.00 (30.00 left); fixed 50.00 forever → 30.00 (0 left); the third gives nothing and
    # is not consumed (recurring keeps its 2 periods).
    result = run("40.00",
                 CouponTerms("pct", percentage=True, frequency="forever", rate=D("25")),
                 CouponTerms("fix", percentage=False, frequency="forever", amount=D("50"), currency="CAD"),
                 CouponTerms("rec", percentage=True, frequency="recurring", rate=D("10"), periods_left=2))
    assert result == [Discount("pct", D("10.00"), None, False), Discount("fix", D("30.00"), None, False)]


def test_percentage_rounds_half_up_to_the_minor_unit_and_once_ends_after_one_use():
    # 12.5 % of 10.02 = 1.2525 → 1.25; of 10.04 = 1.255 → 1.26 (half up).
    assert run("10.02", CouponTerms("p", percentage=True, frequency="once", rate=D("12.5")))[0].amount == D("1.25")
    [d] = run("10.04", CouponTerms("p", percentage=True, frequency="once", rate=D("12.5")))
    assert (d.amount, d.terminated) == (D("1.26"), True)
    # JPY has no minor unit: 15 % of 1,003 = 150.45 → 150.
    assert run("1003", CouponTerms("p", percentage=True, frequency="forever", rate=D("15")),
               currency="JPY", exponent=0)[0].amount == D("150")


def test_recurring_counts_down_and_a_fixed_coupon_in_another_currency_is_skipped():
    [d] = run("100.00",
              CouponTerms("usd", percentage=False, frequency="forever", amount=D("5"), currency="USD"),
              CouponTerms("rec", percentage=False, frequency="recurring", amount=D("5"), currency="CAD",
                          periods_left=1))
    assert d == Discount("rec", D("5.00"), 0, True)
    assert run("0.00", CouponTerms("rec", percentage=True, frequency="recurring", rate=D("10"), periods_left=3)) == []
