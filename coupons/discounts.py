"""Lago's coupon arithmetic for one invoice, without Django (``Credits::AppliedCouponsService``,
``AppliedCoupons::AmountService``, ``Credits::AppliedCouponService``).

The applied coupons of a customer are taken oldest first; each discounts the subtotal left
by the previous ones (before taxes), and the run stops once nothing is left:

* percentage: ``rate / 100 x subtotal left``, in the currency's minor units rounded half up,
  never more than the subtotal left;
* fixed amount: ``min(amount, subtotal left)`` where amount is what is left of the coupon
  (``once``: its amount minus what it already took) or the full amount each period
  (``recurring``, ``forever``); a coupon in another currency than the invoice is skipped.

Consumption: ``once`` ends after its (percentage) use or once its amount is spent;
``recurring`` counts one period down per use and ends at 0; ``forever`` never ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True)
class CouponTerms:
    """One applied coupon as the arithmetic sees it."""

    key: Any  # the applied coupon's id
    percentage: bool
    frequency: str  # once | recurring | forever
    amount: Decimal | None = None  # fixed amount, major units
    currency: str = ""
    rate: Decimal | None = None  # percentage, e.g. Decimal("12.5")
    spent: Decimal = ZERO  # what a fixed ``once`` coupon already took
    periods_left: int | None = None  # recurring: frequency_duration_remaining


@dataclass(frozen=True)
class Discount:
    key: Any
    amount: Decimal  # > 0, major units, in the invoice's minor units
    periods_left: int | None  # recurring: after this use
    terminated: bool  # the applied coupon ends with this use


def _minor(currency_exponent: int) -> Decimal:
    return Decimal(1).scaleb(-currency_exponent)


def invoice_coupon_discounts(*, subtotal: Decimal, currency: str, exponent: int,
                             coupons: list[CouponTerms]) -> list[Discount]:
    """The discounts of ``coupons`` (oldest first) on an invoice of ``subtotal`` before taxes."""
    quantum = _minor(exponent)
    left = subtotal.quantize(quantum, rounding=ROUND_HALF_UP)
    result: list[Discount] = []
    for coupon in coupons:
        if left <= 0:
            break
        if coupon.percentage:
            rate = coupon.rate or ZERO
            amount = min((left * rate / 100).quantize(quantum, rounding=ROUND_HALF_UP), left)
        else:
            if coupon.currency != currency:
                continue
            available = (coupon.amount or ZERO) - (coupon.spent if coupon.frequency == "once" else ZERO)
            amount = min(available.quantize(quantum, rounding=ROUND_HALF_UP), left)
        if amount <= 0:
            continue
        periods_left = coupon.periods_left
        if coupon.frequency == "recurring":
            periods_left = max((periods_left or 0) - 1, 0)
            terminated = periods_left <= 0
        elif coupon.frequency == "once":
            terminated = coupon.percentage or coupon.spent + amount >= (coupon.amount or ZERO)
        else:
            terminated = False
        result.append(Discount(coupon.key, amount, periods_left, terminated))
        left -= amount
    return result
