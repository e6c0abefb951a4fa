"""Lago's wire formats for instants and money."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal


def iso_seconds(value: datetime | None) -> str | None:
    """``2022-04-29T08:59:51Z`` (Lago's ``created_at``)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(value: datetime | None) -> str | None:
    """``2022-04-29T08:59:51.123Z`` (Lago's event ``timestamp`` and ``started_at``)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# ISO 4217 minor-unit exponents that are not 2 (every other code has 2 decimals: USD, CAD, EUR).
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                     "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def minor_unit_exponent(currency: str | None) -> int:
    """Decimals of ``currency``'s minor unit (ISO 4217): JPY 0, USD 2, KWD 3; unknown or None: 2."""
    if currency is None:
        return 2
    return _EXPONENTS.get(currency.upper(), 2)


def to_cents(amount: Decimal, currency: str | None = None) -> int:
    """Integer minor units of ``currency`` (2 decimals when None), rounded half up once, at
    presentation: ``to_cents(Decimal("1234.5"), "JPY") == 1235``, ``to_cents(Decimal("1.2345"),
    "KWD") == 1235``, ``to_cents(Decimal("12.345")) == 1235``."""
    return int(amount.scaleb(minor_unit_exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_cents(cents: int, currency: str | None = None) -> Decimal:
    """The major-unit amount of ``cents`` minor units of ``currency`` (Lago ``amount_cents``):
    ``from_cents(1000, "JPY") == 1000``, ``from_cents(1000, "USD") == 10``, ``from_cents(1000, "KWD") == 1``."""
    return Decimal(cents).scaleb(-minor_unit_exponent(currency))



def money_display(amount: Decimal | None, currency: str | None) -> str:
    """An amount as an operator reads it, in the currency's minor units: ``CAD 10.00``,
    ``JPY 1,000`` (rounded half up, as Odoo rounds the invoice line)."""
    if amount is None:
        return "—"
    decimals = minor_unit_exponent(currency)
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{currency or ''} {rounded:,.{decimals}f}".strip()


def rate_display(amount: Decimal | None, currency: str | None) -> str:
    """A price per unit exactly: at least the minor units (``CAD 10.00``), and every
    significant digit of a sub-cent rate (``CAD 0.0075``): nothing rounded away."""
    if amount is None:
        return "—"
    exponent = int(amount.normalize().as_tuple().exponent)
    decimals = max(minor_unit_exponent(currency), -exponent)
    return f"{currency or ''} {amount:,.{decimals}f}".strip()
