"""The demo subscription that ``seed_demo`` creates is billed like any calendar subscription."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command

from metering import rating
from metering.models import Subscription

pytestmark = pytest.mark.django_db


def _first_of_month(at: datetime, *, months_later: int) -> datetime:
    index = at.month - 1 + months_later
    return datetime(at.year + index // 12, index % 12 + 1, 1, tzinfo=dt_timezone.utc)


def test_demo_subscription_rolls_over_to_calendar_months():
    call_command("seed_demo", stdout=StringIO())
    subscription = Subscription.objects.get(external_id="demo-sub-1")
    first_end = subscription.current_period_end
    assert first_end == _first_of_month(subscription.started_at, months_later=1)

    rating.rate_open_windows(now=first_end + timedelta(days=1))

    subscription.refresh_from_db()
    # The second window is the whole next calendar month, not a month counted from the
    # instant the demo was seeded.
    assert (subscription.current_period_start, subscription.current_period_end) == (
        first_end, _first_of_month(subscription.started_at, months_later=2))
