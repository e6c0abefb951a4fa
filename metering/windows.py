"""Billing windows: half-open ``[start, end)`` periods counted from an anchor, by calendar
date in a billing timezone (Lago's customer ``timezone``).

Boundaries are computed on the local wall clock of ``tz`` (a Jan 31 anchor at local
midnight gives Feb 28 00:00, then Mar 31 00:00 local, whatever the UTC offset of each
date) and returned as aware instants; callers store them in UTC.
"""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, tzinfo

# Re-exported (``as``): metering's callers reach the billing calendar through this module.
from billing_kit.timezones import UTC as UTC, is_timezone_name as is_timezone_name, zone as zone

_MONTHS_PER_INTERVAL = {"monthly": 1, "quarterly": 3, "yearly": 12}


def local_date(moment: datetime, tz: tzinfo) -> date:
    """The calendar day of ``moment`` in ``tz``."""
    return moment.astimezone(tz).date()


def local_midnight(moment: datetime, tz: tzinfo) -> datetime:
    """00:00 in ``tz`` of the day holding ``moment`` (the instant, aware in ``tz``)."""
    day = local_date(moment, tz)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months``, the day clamped to the month's length (Jan 31 -> Feb 28)."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_boundary(*, interval: str, anchor: datetime, index: int) -> datetime:
    """Start of the ``index``-th period after ``anchor`` (index 0 is the anchor itself).

    Always computed from the anchor, never from the previous boundary, so a month-end
    anchor does not drift (Jan 31, Feb 28, Mar 31, ...).
    """
    if interval == "weekly":
        return anchor + timedelta(weeks=index)
    try:
        return _add_months(anchor, _MONTHS_PER_INTERVAL[interval] * index)
    except KeyError:
        raise ValueError(f"unknown plan interval {interval!r}") from None


def _approximate_index(*, interval: str, anchor: datetime, at: datetime) -> int:
    if interval == "weekly":
        return (at - anchor) // timedelta(weeks=1)
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    return months // _MONTHS_PER_INTERVAL[interval]


def billing_window(*, interval: str, anchor: datetime, at: datetime, tz: tzinfo = UTC
                   ) -> tuple[datetime, datetime]:
    """The period counted from ``anchor`` that contains ``at``: ``start <= at < end``.

    Periods are counted on the wall clock of ``tz`` (the anchor's local date and time
    kept across DST changes); the boundaries are returned in UTC.
    """
    if anchor.tzinfo is None or at.tzinfo is None:
        raise ValueError("billing windows need timezone-aware datetimes")
    local_anchor = anchor.astimezone(tz)
    # Compared as instants: a boundary in ``tz`` against ``at`` in UTC (same-zone
    # comparisons would be by wall clock).
    instant = at.astimezone(UTC)
    index = _approximate_index(interval=interval, anchor=local_anchor, at=at.astimezone(tz))
    while period_boundary(interval=interval, anchor=local_anchor, index=index) > instant:
        index -= 1
    while period_boundary(interval=interval, anchor=local_anchor, index=index + 1) <= instant:
        index += 1
    return (
        period_boundary(interval=interval, anchor=local_anchor, index=index).astimezone(UTC),
        period_boundary(interval=interval, anchor=local_anchor, index=index + 1).astimezone(UTC),
    )


def calendar_anchor(*, interval: str, at: datetime, tz: tzinfo = UTC) -> datetime:
    """Start (local midnight in ``tz``, as a UTC instant) of the calendar period containing
    ``at``: Monday, 1st of the month, of the quarter or of the year."""
    return _calendar_start(interval=interval, day=local_midnight(at, tz)).astimezone(UTC)


def _calendar_start(*, interval: str, day: datetime) -> datetime:
    if interval == "weekly":
        return day - timedelta(days=day.weekday())
    if interval == "monthly":
        return day.replace(day=1)
    if interval == "quarterly":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if interval == "yearly":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown plan interval {interval!r}")


def charges_interval(*, interval: str, bill_charges_monthly: bool) -> str:
    """The interval of a subscription's usage windows: the plan's, or a month when a yearly
    plan bills its charges monthly (Lago's ``bill_charges_monthly``). Its boundaries are
    the plan's anchor plus whole months, so every yearly boundary is also a window boundary."""
    return "monthly" if bill_charges_monthly and interval == "yearly" else interval


def default_anchor(*, interval: str, billing_time: str, started_at: datetime, tz: tzinfo = UTC) -> datetime:
    """``anniversary`` periods count from the local midnight of the subscription's start
    DATE in ``tz`` (Lago bills by calendar date, not by time of day); ``calendar`` ones
    from the start of the calendar period it started in."""
    if billing_time == "anniversary":
        return local_midnight(started_at, tz).astimezone(UTC)
    return calendar_anchor(interval=interval, at=started_at, tz=tz)


def subscription_window(
    *, interval: str, billing_time: str, started_at: datetime, at: datetime,
    anchor: datetime | None = None, tz: tzinfo = UTC,
) -> tuple[datetime, datetime]:
    """The window of a subscription that contains ``at``.

    Periods count from ``default_anchor`` unless an explicit ``anchor`` is given (e.g. a
    period start imported from the source system or dictated by Odoo); the first one
    starts at ``started_at`` (the instant, not its midnight: usage before it is not the
    subscription's).
    """
    if anchor is None:
        anchor = default_anchor(interval=interval, billing_time=billing_time, started_at=started_at, tz=tz)
    start, end = billing_window(interval=interval, anchor=anchor, at=at, tz=tz)
    return max(start, started_at), end


# --------------------------------------------------------------------------- a subscription's rules
# Each rule has this one Python form and one SQL form of the same name in
# ``metering.window_sql`` (used by the raw PostgreSQL statements and the ORM paths).


def window_end(*, period_end: datetime, terminated_at: datetime | None) -> datetime:
    """End of the window being rated: the current period's end, cut at ``terminated_at``.

    A subscription terminated before its window began gets an end at or before the
    window's start: an empty window, which rates nothing.
    """
    return period_end if terminated_at is None else min(period_end, terminated_at)


def closed_before(*, period_start: datetime | None, frozen_until: datetime | None) -> datetime | None:
    """The instant before which usage belongs to a closed window: the later of the
    current window's start and ``usage_frozen_until`` (set when rating closes a window).

    None: the subscription has no window yet, nothing is closed.
    """
    known = [instant for instant in (period_start, frozen_until) if instant is not None]
    return max(known) if known else None


def is_period_closed(*, closed_before: datetime | None, timestamp: datetime) -> bool:
    """Ingest refuses an event stamped in a closed window (``period_closed``)."""
    return closed_before is not None and timestamp < closed_before


def subscription_end(*, terminated_at: datetime | None, ending_at: datetime | None) -> datetime | None:
    """The instant a subscription stops taking usage: the earlier of its termination and
    its planned ``ending_at``; None while it has neither."""
    known = [instant for instant in (terminated_at, ending_at) if instant is not None]
    return min(known) if known else None
