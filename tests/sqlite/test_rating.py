"""Rating on the embedded SQLite default: ``rate_usage`` through the ORM aggregate and upsert."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from metering import rating
from metering.models import Charge, RatedUsage, Subscription
from tests.rating.conftest import T0, T1, Catalogue
from tests.sqlite.test_ingest import event_body, make_subscription

pytestmark = pytest.mark.django_db(transaction=True)

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": 3600},
       "cpu_seconds")


@pytest.fixture
def orm_upserts(monkeypatch) -> list[tuple[int, int]]:
    """Proves rating took the SQLite-only ORM path; records (created, updated) per call."""
    calls: list[tuple[int, int]] = []
    real = rating._upsert_orm

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(rating, "_upsert_orm", spy)
    return calls


def rate_usage(*args: str) -> str:
    out = StringIO()
    call_command("rate_usage", *args, stdout=out)
    return out.getvalue()


def test_rate_usage_creates_updates_and_zeroes_rows_exactly(api_client, service, orm_upserts):
    subscription = make_subscription(service)
    for tx, seconds in (("a", 7200), ("b", 3600)):
        assert api_client.post("/api/v1/events", event_body(subscription, tx, cpu_seconds=seconds),
                               format="json").status_code == 200

    assert "1 created, 0 updated" in rate_usage()
    row = RatedUsage.objects.get(subscription=subscription)
    # 10,800 s, 3,600 free: 7,200 s x CAD 0.0075 per 3,600 s.
    assert (row.units, row.billable_units, row.amount, row.events_count) == (
        Decimal(10800), Decimal(7200), Decimal("0.015"), 2)
    assert isinstance(row.amount, Decimal) and row.state == "open"
    assert (row.window_start, row.window_end) == (subscription.current_period_start, subscription.current_period_end)

    assert "0 created, 0 updated" in rate_usage("--service", service.code)
    assert api_client.post("/api/v1/events", event_body(subscription, "c", cpu_seconds=3600),
                           format="json").status_code == 200
    assert "0 created, 1 updated" in rate_usage("--subscription", subscription.external_id)
    row.refresh_from_db()
    assert (row.units, row.amount, row.events_count) == (Decimal(14400), Decimal("0.0225"), 3)

    Charge.objects.filter(plan=subscription.plan).update(free_units=Decimal(10**6))
    assert "0 created, 1 updated" in rate_usage()
    row.refresh_from_db()
    assert (row.units, row.billable_units, row.amount) == (Decimal(14400), Decimal(0), Decimal(0))
    assert RatedUsage.objects.count() == 1
    assert orm_upserts == [(1, 0), (0, 0), (0, 1), (0, 1)]


def test_rate_usage_freezes_an_ended_window_and_opens_the_current_one(api_client, service, orm_upserts):
    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    subscription = catalogue.subscription(plan, start=T0, end=T1, external_id="old-sub")
    catalogue.events(subscription, "cpu_seconds", [(T0, 3600), (T0 + timedelta(days=3), 7200),
                                                   (T1, 999_999)])  # T1 is the next window's

    output = rate_usage()
    assert "2 created" in output and " 0 window(s) closed" not in output

    first, second = RatedUsage.objects.filter(subscription=subscription).order_by("window_start")
    assert (first.window_start, first.window_end, first.state) == (T0, T1, "frozen")
    assert (first.units, first.amount) == (Decimal(10800), Decimal("0.015"))
    assert (second.window_start, second.state, second.units) == (T1, "frozen", Decimal(999_999))
    subscription.refresh_from_db()
    now = datetime.now(timezone.utc)
    assert subscription.current_period_start <= now < subscription.current_period_end
    # The frozen window takes no more events.
    late = api_client.post("/api/v1/events", event_body(subscription, "late", timestamp=T0 + timedelta(days=1)),
                           format="json")
    assert late.status_code == 422 and late.json()["error_details"] == {"timestamp": ["period_closed"]}
    assert orm_upserts, "rating did not take the ORM path"
    assert Subscription.objects.get(pk=subscription.pk).usage_frozen_until == subscription.current_period_start


def test_each_subscription_closes_after_its_own_grace(api_client, service, orm_upserts):
    """The per-row grace comparison (``window_[end] + grace_period``) on SQLite: windows that ended
    a day ago; the service's 2 days keep one open, a customer's own 0 closes the other."""
    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)
    start = end - timedelta(days=30)
    kept = catalogue.subscription(plan, start=start, end=end, external_id="kept")
    closed = catalogue.subscription(plan, start=start, end=end, external_id="closed")
    response = api_client.put("/api/v1/organizations", {"organization": {
        "billing_configuration": {"invoice_grace_period": 2}}}, format="json")
    assert response.status_code == 200, response.content
    response = api_client.post("/api/v1/customers", {"customer": {
        "external_id": closed.account_link.external_id, "billing_configuration": {"invoice_grace_period": 0}}},
        format="json")
    assert response.status_code == 200, response.content
    rate_usage()
    assert Subscription.objects.get(pk=kept.pk).current_period_start == start
    assert Subscription.objects.get(pk=closed.pk).current_period_start == end
    late = {s.external_id: api_client.post("/api/v1/events", event_body(s, f"late-{s.external_id}",
                                                                        timestamp=end - timedelta(hours=1)),
                                           format="json").status_code for s in (kept, closed)}
    assert late == {"kept": 200, "closed": 422}
