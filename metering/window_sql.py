"""The SQL forms of a subscription's window rules (``metering.windows`` has the Python
form of each, under the same name without ``_sql``).

The raw fragments are functions of the subscription table's alias in a statement and
are written for PostgreSQL, whose LEAST and GREATEST ignore NULLs (the "earliest/latest
of the known instants" of the Python forms). The ORM expressions serve the portable paths
(the embedded SQLite default) and annotations.
"""
from __future__ import annotations

from django.db.models import F
from django.db.models.functions import Coalesce, Least


def window_end_sql(alias: str) -> str:
    """``metering.windows.window_end`` of the subscription row ``alias``."""
    return f"LEAST({alias}.current_period_end, COALESCE({alias}.terminated_at, {alias}.current_period_end))"


def window_end_expression(path: str = "") -> Least:
    """``metering.windows.window_end`` as an ORM expression; ``path`` leads to the
    subscription (``"subscription__"`` from a usage event, ``""`` on the subscription)."""
    period_end = F(f"{path}current_period_end")
    return Least(period_end, Coalesce(F(f"{path}terminated_at"), period_end))


def closed_before_sql(alias: str) -> str:
    """``metering.windows.closed_before`` of the subscription row ``alias``."""
    return f"GREATEST({alias}.current_period_start, {alias}.usage_frozen_until)"


def subscription_end_sql(alias: str) -> str:
    """``metering.windows.subscription_end`` of the subscription row ``alias``."""
    return f"LEAST({alias}.terminated_at, {alias}.ending_at)"
