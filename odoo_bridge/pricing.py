"""Pure money helpers for the Odoo bridge (no Django, no I/O).

Odoo stores `price_unit` with the "Product Price" decimal precision (2 digits by
default) and rounds on write, so a $0.0075 per core-hour rate written as a unit
price would silently become $0.01. When the rate does not survive Odoo's
precision, the bridge pushes quantity 1 at the pre-rated amount instead and
flags the line (the seeds' "sub-cent rate corrupted" lesson).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation



def quantum(digits: int) -> Decimal:
    return Decimal(1).scaleb(-digits)


def fits(value: Decimal, digits: int) -> bool:
    """True when `value` has no more than `digits` decimals."""
    return value == value.quantize(quantum(digits), rounding=ROUND_HALF_UP)


def decimal_from_odoo(value: object, *, digits: int = 2) -> Decimal:
    """Odoo sends money as JSON floats; go through `str` (never binary) and round to the currency."""
    if value in (None, False, ""):
        return Decimal(0).quantize(quantum(digits))
    try:
        return Decimal(str(value)).quantize(quantum(digits), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"not a number from Odoo: {value!r}") from exc


def to_odoo_number(value: Decimal) -> float:
    """JSON-RPC has no decimal type; the value was already rounded to Odoo's digits."""
    return float(value)  # ok-float: wire format of Odoo's Float fields, after exact rounding


@dataclass(frozen=True)
class LinePricing:
    quantity: Decimal
    price_unit: Decimal
    pre_rated: bool
    reason: str = ""

    @property
    def total(self) -> Decimal:
        return self.quantity * self.price_unit


def usage_line_pricing(*, billable_units: Decimal, amount: Decimal, unit_rate: Decimal | None,
                       price_digits: int, quantity_digits: int) -> LinePricing:
    """How to express one RatedUsage as an Odoo order line without losing money.

    `unit_rate` is the per-unit price when the charge is plainly unit-priced
    (standard model), else None. Quantity x unit price is used only when Odoo can
    hold both exactly and their product is our amount; otherwise quantity 1 at the
    amount (rounded once, to Odoo's price digits).
    """
    amount = Decimal(amount)
    if unit_rate is not None:
        rate = Decimal(unit_rate)
        units = Decimal(billable_units)
        if not fits(rate, price_digits):
            reason = f"rate {rate.normalize()} needs more than {price_digits} price digits"
        elif not fits(units, quantity_digits):
            reason = f"quantity {units.normalize()} needs more than {quantity_digits} digits"
        elif units * rate != amount:
            reason = "amount is not quantity x rate"
        else:
            return LinePricing(quantity=units.quantize(quantum(quantity_digits)),
                               price_unit=rate.quantize(quantum(price_digits)), pre_rated=False)
    else:
        reason = "charge is not priced per unit"
    price = amount.quantize(quantum(price_digits), rounding=ROUND_HALF_UP)
    return LinePricing(quantity=Decimal(1), price_unit=price, pre_rated=True, reason=reason)


def window_label(*, start: dt.datetime, end: dt.datetime, tz: dt.tzinfo = dt.timezone.utc) -> str:
    """Human label of a half-open window [start, end) in its billing calendar ``tz``: the days the
    customer sees on the invoice (the inclusive last day is end - 1 s)."""
    last = end - dt.timedelta(seconds=1)
    return f"{start.astimezone(tz):%Y-%m-%d} – {last.astimezone(tz):%Y-%m-%d}"
