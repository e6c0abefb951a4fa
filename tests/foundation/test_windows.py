from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.windows import billing_window, calendar_anchor, subscription_window

UTC = timezone.utc


def dt(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_month_end_anchor_does_not_drift():
    anchor = dt(2026, 1, 31)
    assert billing_window(interval="monthly", anchor=anchor, at=dt(2026, 2, 15)) == (dt(2026, 1, 31), dt(2026, 2, 28))
    assert billing_window(interval="monthly", anchor=anchor, at=dt(2026, 3, 1)) == (dt(2026, 2, 28), dt(2026, 3, 31))
    assert billing_window(interval="monthly", anchor=anchor, at=dt(2026, 4, 10)) == (dt(2026, 3, 31), dt(2026, 4, 30))


def test_windows_are_half_open():
    anchor = dt(2026, 1, 1)
    assert billing_window(interval="monthly", anchor=anchor, at=dt(2026, 2, 1)) == (dt(2026, 2, 1), dt(2026, 3, 1))
    just_before = dt(2026, 2, 1) - timedelta(microseconds=1)
    assert billing_window(interval="monthly", anchor=anchor, at=just_before) == (dt(2026, 1, 1), dt(2026, 2, 1))


def test_each_interval():
    anchor = dt(2026, 1, 15, 12)
    at = dt(2026, 5, 20)
    assert billing_window(interval="weekly", anchor=anchor, at=at) == (dt(2026, 5, 14, 12), dt(2026, 5, 21, 12))
    assert billing_window(interval="quarterly", anchor=anchor, at=at) == (dt(2026, 4, 15, 12), dt(2026, 7, 15, 12))
    assert billing_window(interval="yearly", anchor=anchor, at=at) == (dt(2026, 1, 15, 12), dt(2027, 1, 15, 12))


def test_calendar_subscription_first_window_starts_at_the_subscription():
    started = dt(2026, 3, 10, 9, 30)
    assert calendar_anchor(interval="monthly", at=started) == dt(2026, 3, 1)
    assert subscription_window(interval="monthly", billing_time="calendar", started_at=started, at=started) == (
        started, dt(2026, 4, 1))
    assert subscription_window(interval="quarterly", billing_time="calendar", started_at=started,
                               at=dt(2026, 4, 2)) == (dt(2026, 4, 1), dt(2026, 7, 1))


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        billing_window(interval="monthly", anchor=datetime(2026, 1, 1), at=dt(2026, 1, 2))


@given(
    interval=st.sampled_from(["weekly", "monthly", "quarterly", "yearly"]),
    anchor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)),
)
def test_every_instant_is_in_exactly_its_window(interval, anchor, offset):
    at = anchor + offset
    start, end = billing_window(interval=interval, anchor=anchor, at=at)
    assert start <= at < end
    # The next window starts exactly where this one ends: no gap, no overlap.
    assert billing_window(interval=interval, anchor=anchor, at=end)[0] == end
