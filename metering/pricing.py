"""Charge models: validate Lago ``properties`` and price a quantity of units.

Pure functions over ``Decimal`` — no Django, no database, no float.

Lago wire shapes (reference/lago-api.md §6.2) plus two Fusion Billing
extensions:

* ``free_units`` (included quota) on every model. It is subtracted from the
  aggregated units before the model applies: ``billable = max(units - free, 0)``.
  Lago only knows it on ``package`` (integer); we also accept a non-negative
  decimal string so a quota like ``"0.5"`` survives.
* ``unit_batch`` on ``standard``: the price is per batch of N units (e.g.
  CAD ``"0.0075"`` per core-hour with ``unit_batch`` 3600 over a metric counted
  in CPU-seconds). The result is fractional: 1,800 CPU-seconds cost half a
  batch.

Money rules: every intermediate value is exact (Decimal addition and
multiplication under a wide local context never round; the single division
of ``standard`` is done as an exact integer division with remainder).  The
final amount is quantized ONCE to 6 decimal places with ROUND_HALF_UP
(half a micro-unit rounds away from zero — amounts are never negative).
Cents are rounded later, at presentation and on the Odoo invoice line.

Tier bounds follow Lago's range rules: the first range starts at 0, each next
``from_value`` equals the previous ``to_value`` (adjacent ranges) or that + 1
(Lago's classic integer ranges), every ``to_value`` but the last is greater
than its ``from_value``, and the last ``to_value`` is null.  In both styles a
tier covers the half-open unit interval ``(previous to_value, to_value]`` (the
first tier ``(0, to_value]``), which is exactly how Lago counts units per range
(``min(units, to) - from + 1`` for classic ranges, ``- from`` for adjacent
ones) and keeps pricing continuous for fractional units.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator, Mapping

from billing_kit.errors import ErrorCode

__all__ = [
    "AMOUNT_PLACES",
    "CHARGE_MODELS",
    "ChargePropertiesInvalid",
    "ChargeTerms",
    "Priced",
    "Tier",
    "charge_columns",
    "parse_charge_properties",
    "price_units",
    "quantize_amount",
    "render_charge_properties",
    "round_units",
    "ROUNDING_FUNCTIONS",
    "with_min_amount",
    "terms_for_charge",
    "terms_to_properties",
]

CHARGE_MODELS = ("standard", "package", "graduated", "volume")
# Lago's other charge models: valid in Lago, not built here, so ``not_supported`` (not "invalid").
LAGO_CHARGE_MODELS_NOT_BUILT = ("percentage", "graduated_percentage", "custom", "dynamic")
AMOUNT_PLACES = 6
_MICRO = Decimal(1).scaleb(-AMOUNT_PLACES)
ZERO = Decimal(0)
ONE = Decimal(1)

# Wide enough that +, -, * of realistic values (and of anything a client can
# send that passes validation) are exact; Inexact is trapped so a value that
# would not fit raises instead of being rounded silently.
_EXACT = decimal.Context(
    prec=200,
    rounding=decimal.ROUND_HALF_UP,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)
# The final rounding step runs under this context (rounding allowed, exactly once).
_EXACT_QUANTIZE = decimal.Context(
    prec=200, rounding=decimal.ROUND_HALF_UP, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation],
)
# What the Charge columns store exactly (metering.models RATE / QUANTITY: 10 decimal
# places, 28 and 38 digits): anything finer or larger is refused, never rounded on save.
STORED_PLACES = 10
MONEY_INTEGER_DIGITS = 18
QUANTITY_INTEGER_DIGITS = 28


class ChargePropertiesInvalid(ValueError):
    """Lago-shaped validation failure; ``error_details`` maps field -> [codes]."""

    def __init__(self, error_details: dict[str, list[str]]) -> None:
        super().__init__(error_details)
        self.error_details = error_details


@dataclass(frozen=True)
class Tier:
    """One graduated/volume range as sent by Lago (bounds are integers; a stored bound
    edited to a fraction, e.g. in the admin, is kept as its Decimal)."""

    from_value: int | Decimal
    to_value: int | Decimal | None
    per_unit_amount: Decimal
    flat_amount: Decimal


@dataclass(frozen=True)
class ChargeTerms:
    charge_model: str
    free_units: Decimal = ZERO
    amount: Decimal | None = None  # standard: per unit (or per batch); package: per package
    unit_batch: Decimal | None = None  # standard only; None means 1
    package_size: int | Decimal | None = None  # package only (an integer, see Tier)
    tiers: tuple[Tier, ...] = ()  # graduated / volume


@dataclass(frozen=True)
class Priced:
    billable_units: Decimal  # units left after free units, before batching/packaging
    amount: Decimal  # exact, quantized once to 6 dp


# --------------------------------------------------------------------------- parsing


class _Errors:
    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}

    def add(self, field: str, code: str) -> None:
        codes = self.details.setdefault(field, [])
        if code not in codes:
            codes.append(code)


def _decimal_string(value: Any, *, integer_digits: int = MONEY_INTEGER_DIGITS) -> Decimal | None:
    """A non-negative finite decimal given as a STRING (Lago refuses numbers) that the
    database stores exactly (at most 10 decimal places, ``integer_digits`` before the point)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        parsed = Decimal(text)
    except decimal.InvalidOperation:
        return None
    if not parsed.is_finite() or parsed < 0:
        return None
    if parsed >= Decimal(10) ** integer_digits:
        return None
    if _exponent(parsed) < -STORED_PLACES and parsed != parsed.quantize(Decimal(1).scaleb(-STORED_PLACES)):
        return None
    return parsed + 0  # normalises -0 to 0


def _exponent(value: Decimal) -> int:
    """The exponent of a finite Decimal (``as_tuple`` gives a letter for NaN and Infinity)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not finite")
    return exponent


def _integer(value: Any) -> int | None:
    # bool is an int subclass in Python; JSON true/false is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    number: int = value
    if abs(number) >= 10**QUANTITY_INTEGER_DIGITS:
        return None
    return number


def _free_units(properties: Mapping[str, Any], errors: _Errors, *, integer_only: bool) -> Decimal:
    if "free_units" not in properties or properties["free_units"] is None:
        return ZERO
    raw = properties["free_units"]
    as_int = _integer(raw)
    if as_int is not None and as_int >= 0:
        return Decimal(as_int)
    if not integer_only:
        as_dec = _decimal_string(raw, integer_digits=QUANTITY_INTEGER_DIGITS)
        if as_dec is not None:
            return as_dec
    errors.add("free_units", ErrorCode.INVALID_FREE_UNITS)
    return ZERO


def _amount(properties: Mapping[str, Any], key: str, errors: _Errors) -> Decimal:
    parsed = _decimal_string(properties.get(key))
    if parsed is None:
        errors.add(key, ErrorCode.INVALID_AMOUNT)
        return ZERO
    return parsed


_RANGE_CODES = {
    "graduated_ranges": (ErrorCode.MISSING_GRADUATED_RANGES, ErrorCode.INVALID_GRADUATED_RANGES),
    "volume_ranges": (ErrorCode.MISSING_VOLUME_RANGES, ErrorCode.INVALID_VOLUME_RANGES),
}


def _tiers(properties: Mapping[str, Any], key: str, errors: _Errors) -> tuple[Tier, ...]:
    missing, invalid = _RANGE_CODES[key]
    raw = properties.get(key)
    if not isinstance(raw, list) or not raw:
        errors.add(key, missing)
        return ()
    tiers: list[Tier] = []
    previous_to: int | None = None
    bounds_ok = True
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            errors.add(key, invalid)
            bounds_ok = False
            continue
        per_unit = _decimal_string(item.get("per_unit_amount"))
        if per_unit is None:
            errors.add("per_unit_amount", ErrorCode.INVALID_AMOUNT)
        flat = _decimal_string(item.get("flat_amount"))
        if flat is None:
            errors.add("flat_amount", ErrorCode.INVALID_AMOUNT)
        from_value = _integer(item.get("from_value"))
        to_raw = item.get("to_value")
        to_value = None if to_raw is None else _integer(to_raw)
        is_last = index == len(raw) - 1
        if index == 0:
            from_ok = from_value == 0
        else:
            from_ok = (
                from_value is not None
                and previous_to is not None
                and from_value in (previous_to, previous_to + 1)
            )
        if is_last:
            to_ok = to_raw is None
        else:
            to_ok = to_value is not None and from_value is not None and to_value > from_value
        if not (from_ok and to_ok):
            bounds_ok = False
        previous_to = to_value
        tiers.append(
            Tier(
                from_value=from_value if from_value is not None else 0,
                to_value=to_value,
                per_unit_amount=per_unit if per_unit is not None else ZERO,
                flat_amount=flat if flat is not None else ZERO,
            )
        )
    if not bounds_ok:
        errors.add(key, invalid)
    return tuple(tiers)


def parse_charge_properties(*, charge_model: Any, properties: Any) -> ChargeTerms:
    """Validate Lago charge ``properties`` for ``charge_model``; return typed terms.

    Raises ``ChargePropertiesInvalid`` with Lago error codes, e.g.
    ``{"amount": ["invalid_amount"]}``. Keys that do not belong to the model
    are ignored, as Lago does (it filters properties per charge model).
    """
    errors = _Errors()
    if charge_model in LAGO_CHARGE_MODELS_NOT_BUILT:
        raise ChargePropertiesInvalid({"charge_model": [ErrorCode.NOT_SUPPORTED]})
    if charge_model not in CHARGE_MODELS:
        raise ChargePropertiesInvalid({"charge_model": [ErrorCode.VALUE_IS_INVALID]})
    if not isinstance(properties, Mapping):
        raise ChargePropertiesInvalid({"properties": [ErrorCode.INVALID_PROPERTIES]})

    for group_key in ("pricing_group_keys", "grouped_by"):
        if properties.get(group_key):
            # Per-group pricing is not supported: refuse rather than bill wrongly.
            errors.add(group_key, ErrorCode.NOT_SUPPORTED)

    if charge_model != "standard" and properties.get("unit_batch") is not None:
        errors.add("unit_batch", ErrorCode.NOT_COMPATIBLE_WITH_CHARGE_MODEL)

    if charge_model == "standard":
        amount = _amount(properties, "amount", errors)
        free_units = _free_units(properties, errors, integer_only=False)
        unit_batch: Decimal | None = None
        raw_batch = properties.get("unit_batch")
        if raw_batch is not None:
            as_int = _integer(raw_batch)
            batch = (Decimal(as_int) if as_int is not None
                     else _decimal_string(raw_batch, integer_digits=QUANTITY_INTEGER_DIGITS))
            if batch is None or batch <= 0:
                errors.add("unit_batch", ErrorCode.INVALID_UNIT_BATCH)
            elif batch != ONE:
                unit_batch = batch
        terms = ChargeTerms(charge_model, free_units=free_units, amount=amount, unit_batch=unit_batch)
    elif charge_model == "package":
        amount = _amount(properties, "amount", errors)
        # Lago: package_size integer > 0, free_units integer >= 0 (both required
        # by Lago's validator; free_units defaults to 0 here when absent).
        package_size = _integer(properties.get("package_size"))
        if package_size is None or package_size <= 0:
            errors.add("package_size", ErrorCode.INVALID_PACKAGE_SIZE)
            package_size = 1
        free_units = _free_units(properties, errors, integer_only=True)
        terms = ChargeTerms(charge_model, free_units=free_units, amount=amount, package_size=package_size)
    elif charge_model == "graduated":
        free_units = _free_units(properties, errors, integer_only=False)
        tiers = _tiers(properties, "graduated_ranges", errors)
        terms = ChargeTerms(charge_model, free_units=free_units, tiers=tiers)
    else:  # volume
        free_units = _free_units(properties, errors, integer_only=False)
        tiers = _tiers(properties, "volume_ranges", errors)
        terms = ChargeTerms(charge_model, free_units=free_units, tiers=tiers)

    if errors.details:
        raise ChargePropertiesInvalid(errors.details)
    return terms


# --------------------------------------------------------------------------- rendering


def _decimal_text(value: Decimal) -> str:
    """Plain (non-scientific) string of a Decimal without trailing zeros ("0.0075", "5")."""
    return format(value.normalize(context=_EXACT_QUANTIZE), "f")


def _units_value(value: Decimal) -> int | str:
    return int(value) if value == value.to_integral_value() else _decimal_text(value)


def terms_to_properties(terms: ChargeTerms) -> dict[str, Any]:
    """Lago-shaped ``properties`` for ``terms``; parsing it gives ``terms`` back."""
    props: dict[str, Any] = {}
    if terms.charge_model == "standard":
        props["amount"] = _decimal_text(terms.amount or ZERO)
        if terms.unit_batch is not None:
            props["unit_batch"] = _units_value(terms.unit_batch)
        if terms.free_units:
            props["free_units"] = _units_value(terms.free_units)
    elif terms.charge_model == "package":
        props["amount"] = _decimal_text(terms.amount or ZERO)
        props["free_units"] = int(terms.free_units)
        props["package_size"] = terms.package_size
    else:
        key = "graduated_ranges" if terms.charge_model == "graduated" else "volume_ranges"
        props[key] = [
            {
                "from_value": tier.from_value,
                "to_value": tier.to_value,
                "per_unit_amount": _decimal_text(tier.per_unit_amount),
                "flat_amount": _decimal_text(tier.flat_amount),
            }
            for tier in terms.tiers
        ]
        if terms.free_units:
            props["free_units"] = _units_value(terms.free_units)
    return props


# --------------------------------------------------------------------------- pricing


def quantize_amount(value: Decimal) -> Decimal:
    """The one rounding step: 6 dp, ROUND_HALF_UP."""
    return value.quantize(_MICRO, rounding=decimal.ROUND_HALF_UP, context=_EXACT_QUANTIZE)


def _divide_to_micro(numerator: Decimal, denominator: Decimal) -> Decimal:
    """``numerator / denominator`` rounded half-up to 6 dp, computed exactly.

    The quotient of e.g. ``x / 3600`` does not terminate, so a plain Decimal
    division would round at the context precision first and then again at
    6 dp; an integer division with remainder rounds exactly once.
    """
    with decimal.localcontext(_EXACT):
        scaled = numerator.scaleb(AMOUNT_PLACES)
        # Bring both to integers so divmod is an integer division.
        shift = max(-_exponent(scaled), -_exponent(denominator), 0)
        num_int = int(scaled.scaleb(shift))
        den_int = int(denominator.scaleb(shift))
    quotient, remainder = divmod(num_int, den_int)
    if 2 * remainder >= den_int:
        quotient += 1
    return Decimal(quotient).scaleb(-AMOUNT_PLACES, context=_EXACT_QUANTIZE)


def _ceil_div(numerator: Decimal, denominator: int | Decimal) -> int:
    with decimal.localcontext(_EXACT):
        quotient, remainder = divmod(numerator, Decimal(denominator))
    whole = int(quotient)
    return whole + 1 if remainder > 0 else whole


def _tier_bounds(tiers: tuple[Tier, ...]) -> Iterator[tuple[Decimal, Decimal | None, Tier]]:
    """Yield (lower, upper, tier) with the tier covering units in (lower, upper]."""
    lower = ZERO
    for tier in tiers:
        upper = None if tier.to_value is None else Decimal(tier.to_value)
        yield lower, upper, tier
        if upper is None:
            return
        lower = upper


def price_units(*, terms: ChargeTerms, units: Decimal) -> Priced:
    """Price ``units`` (an aggregated Decimal quantity, >= 0) under ``terms``."""
    if not isinstance(units, Decimal):
        raise TypeError("units must be a Decimal")
    if not units.is_finite() or units < 0:
        raise ValueError("units must be a finite, non-negative Decimal")

    with decimal.localcontext(_EXACT):
        billable = units - terms.free_units if units > terms.free_units else ZERO
        billable = billable + 0
        model = terms.charge_model
        if billable == 0:
            return Priced(billable_units=ZERO, amount=quantize_amount(ZERO))

        if model == "standard":
            product = billable * (terms.amount or ZERO)
            if terms.unit_batch is not None:
                return Priced(billable, _divide_to_micro(product, terms.unit_batch))
            return Priced(billable, quantize_amount(product))

        if model == "package":
            packages = _ceil_div(billable, terms.package_size or 1)
            return Priced(billable, quantize_amount(Decimal(packages) * (terms.amount or ZERO)))

        if model == "graduated":
            total = ZERO
            for lower, upper, tier in _tier_bounds(terms.tiers):
                if billable <= lower:
                    break
                top = billable if upper is None or billable < upper else upper
                total += (top - lower) * tier.per_unit_amount + tier.flat_amount
            return Priced(billable, quantize_amount(total))

        if model == "volume":
            # The tier is chosen by the AGGREGATED units, as Lago's matching_range does; the
            # billable units (after free units) are priced at it. Choosing by the billable
            # units would let free units move the usage down to a dearer tier and RAISE the
            # bill (110 units, 10 free: 100 x 2 + 1 = 201 instead of 100 x 1 = 100).
            for lower, upper, tier in _tier_bounds(terms.tiers):
                if upper is None or units <= upper:
                    return Priced(
                        billable, quantize_amount(billable * tier.per_unit_amount + tier.flat_amount)
                    )
            raise ValueError("volume ranges do not cover the units")  # unreachable for parsed terms

    raise ValueError(f"unknown charge model {terms.charge_model!r}")


# --------------------------------------------------------------------------- charge rows
# Duck-typed over ``metering.models.Charge`` (typed columns + ``tiers``) so this
# module stays free of Django imports.


def _bound(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value


def terms_for_charge(charge: Any) -> ChargeTerms:
    """``ChargeTerms`` of a stored Charge (its ``tiers`` ordered by position)."""
    model = charge.charge_model
    free_units = (charge.free_units or ZERO) + 0
    if model == "standard":
        batch = charge.unit_batch
        return ChargeTerms(
            model,
            free_units=free_units,
            amount=charge.amount,
            unit_batch=None if batch is None or batch == ONE else batch,
        )
    if model == "package":
        size = charge.package_size
        return ChargeTerms(model, free_units=free_units, amount=charge.amount,
                           package_size=None if size is None else _bound(size))
    tiers = sorted(charge.tiers.all(), key=lambda tier: tier.position)
    return ChargeTerms(
        model,
        free_units=free_units,
        tiers=tuple(
            Tier(
                from_value=_bound(tier.from_value),
                to_value=None if tier.to_value is None else _bound(tier.to_value),
                per_unit_amount=tier.per_unit_amount,
                flat_amount=tier.flat_amount,
            )
            for tier in tiers
        ),
    )


def charge_columns(terms: ChargeTerms) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Column values for a Charge row and its ChargeTier rows, from parsed terms.

    ``Charge(**fields)`` then ``ChargeTier(charge=..., **tier)`` for each tier.
    """
    fields: dict[str, Any] = {
        "charge_model": terms.charge_model,
        "amount": terms.amount if terms.charge_model in ("standard", "package") else None,
        "free_units": terms.free_units,
        "unit_batch": terms.unit_batch if terms.unit_batch is not None else ONE,
        "package_size": Decimal(terms.package_size) if terms.package_size is not None else None,
    }
    tiers = [
        {
            "position": position,
            "from_value": Decimal(tier.from_value),
            "to_value": None if tier.to_value is None else Decimal(tier.to_value),
            "per_unit_amount": tier.per_unit_amount,
            "flat_amount": tier.flat_amount,
        }
        for position, tier in enumerate(terms.tiers)
    ]
    return fields, tiers


def render_charge_properties(charge: Any) -> dict[str, Any]:
    """Lago ``properties`` of a stored Charge (decimal strings, integer bounds)."""
    return terms_to_properties(terms_for_charge(charge))


# --------------------------------------------------------------------------- metric rounding, minimum


ROUNDING_FUNCTIONS = {"round": decimal.ROUND_HALF_UP, "ceil": decimal.ROUND_CEILING, "floor": decimal.ROUND_FLOOR}
ROUNDING_PRECISION_RANGE = (-10, 10)


def round_units(units: Decimal, *, function: str | None, precision: int | None) -> Decimal:
    """Lago's metric ``rounding_function`` applied to a window's aggregated units.

    ``round`` is half up (Ruby ``BigDecimal#round``), ``ceil`` towards +infinity, ``floor``
    towards -infinity, at ``precision`` decimal places (0 when null; negative rounds to
    tens, hundreds...). No function: the units are returned unchanged.
    ``round_units(Decimal("2.345"), function="round", precision=2) == Decimal("2.35")``;
    ``ceil`` of 0.1 at precision 0 is 1; ``floor`` of 1.99 at precision 0 is 1.
    """
    if not function:
        return units
    step = Decimal(1).scaleb(-(precision or 0))
    rounded = units.quantize(step, rounding=ROUNDING_FUNCTIONS[function], context=_EXACT_QUANTIZE)
    # Plain (non-scientific) value: ``1E+2`` becomes ``100``.
    return Decimal(int(rounded)) if rounded == rounded.to_integral_value() else rounded


def with_min_amount(amount: Decimal, min_amount: Decimal | None) -> Decimal:
    """A charge's amount for a window raised to its ``min_amount`` (Lago ``min_amount_cents``).

    Lago bills the shortfall as a separate "true-up" fee; here it is part of the window's
    rated amount (one line per charge and window): usage 3.00 with a minimum of 10.00 rates
    10.00 (3.00 usage + 7.00 true-up); usage 12.00 rates 12.00.
    """
    if min_amount is None or min_amount <= amount:
        return amount
    return quantize_amount(min_amount)
