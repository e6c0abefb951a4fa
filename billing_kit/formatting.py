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


def to_cents(amount: Decimal) -> int:
    """Integer minor units, rounded half up once, at presentation."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

