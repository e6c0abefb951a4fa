"""The order's dates are days of the subscription's own billing calendar (issue #12): the
customer's Lago ``timezone`` snapshotted on the subscription, not ``BILLING_TIMEZONE``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from metering import windows
from metering.models import Subscription
from odoo_bridge.sync import push_cycle

from .conftest import UTC

pytestmark = pytest.mark.django_db

TOKYO = "Asia/Tokyo"


def test_order_dates_follow_the_subscriptions_timezone_not_the_default(fake_odoo, catalog, settings):
    """Tokyo (UTC+9), calendar monthly, started Nov 15 00:00 JST = Nov 14 15:00 UTC.

    Window [Nov 14 15:00 UTC, Nov 30 15:00 UTC) = [Nov 15, Dec 1) in Tokyo. Odoo's dates are Tokyo
    days: start_date 2026-11-15, next_invoice_date 2026-12-01 (in UTC they would read Nov 14 and
    Nov 30, and Odoo's run of Nov 30 would come before the window's close at 15:00 UTC).
    """
    settings.BILLING_TIMEZONE = "UTC"
    tz = windows.zone(TOKYO)
    started = dt.datetime(2026, 11, 14, 15, tzinfo=UTC)
    start, end = windows.subscription_window(interval="monthly", billing_time="calendar", started_at=started,
                                             at=started, tz=tz)
    assert (start, end) == (started, dt.datetime(2026, 11, 30, 15, tzinfo=UTC))
    sub = catalog.subscription()
    Subscription.objects.filter(pk=sub.pk).update(
        billing_timezone=TOKYO, started_at=started, subscription_at=started,
        billing_anchor=windows.calendar_anchor(interval="monthly", at=started, tz=tz),
        current_period_start=start, current_period_end=end)
    push_cycle(now=dt.datetime(2026, 11, 14, 16, tzinfo=UTC))
    [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{sub.pk}"]],
                                ["start_date", "next_invoice_date"])
    assert (order["start_date"], order["next_invoice_date"]) == ("2026-11-15", "2026-12-01")
    # The window closes, usage frozen and pushed: Odoo's run of Nov 30 (before the close in
    # Tokyo) bills nothing, the run of Dec 1 bills the closed window.
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", start=start, end=end)
    fake_odoo.store.clock = lambda: dt.datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert fake_odoo.run_invoicing_cron(today=dt.date(2026, 11, 30)) == []
    next_end = dt.datetime(2026, 12, 31, 15, tzinfo=UTC)
    Subscription.objects.filter(pk=sub.pk).update(current_period_start=end, current_period_end=next_end)
    push_cycle(now=dt.datetime(2026, 11, 30, 16, tzinfo=UTC))
    fake_odoo.store.clock = lambda: dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert len(fake_odoo.run_invoicing_cron(today=dt.date(2026, 12, 1))) == 1
    assert [inv.amount_untaxed for inv in fake_odoo.invoices(order["id"])] == [Decimal("3.00")]
    # The line names the customer's days, as the order's dates do: Nov 15 – Nov 30 in Tokyo
    # (in UTC it would read 2026-11-14 – 2026-11-30).
    names = [line["name"] for line in fake_odoo.records("sale.order.line", [["order_id", "=", order["id"]]],
                                                          ["name"])]
    assert any(name.endswith("2026-11-15 – 2026-11-30") for name in names), names
