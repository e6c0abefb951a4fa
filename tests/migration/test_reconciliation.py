"""Reconciliation of shadow rating against NexaCloud's billed_periods."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from metering.models import Subscription
from migration.models import Reconciliation
from migration.reader import SourceBilledPeriod
from migration.reconciliation import reconcile_rows
from migration.services import import_nexacloud
from migration.testing.source_db import Fixture as F

pytestmark = pytest.mark.django_db
OCT = date(2026, 10, 1)


@pytest.fixture
def imported(service, nexacloud_dsn):
    import_nexacloud(dsn=nexacloud_dsn)
    return service


def by_sub() -> dict[str, Reconciliation]:
    return {r.external_subscription_id: r for r in Reconciliation.objects.all()}


def test_reconcile_command_counts_statuses_and_writes_csv(imported, nexacloud_dsn, tmp_path):
    out = StringIO()
    target = tmp_path / "recon.csv"
    call_command("reconcile", service="nexacloud", dsn=nexacloud_dsn, csv=str(target), stdout=out)
    text = out.getvalue()
    assert "match                    3" in text
    assert "missing_in_fusion        1" in text and "missing_in_source        1" in text
    assert "mismatch                 0" in text

    rows = by_sub()
    starter = rows[F.DEP_ALICE_STARTER]
    assert starter.fusion_amount == Decimal("12.750000") and starter.source_amount == Decimal("12.7500")
    bob = rows[F.DEP_BOB_STARTER]  # 40,001 s over quota: 6 dp vs 4 dp, within tolerance
    assert bob.fusion_amount == Decimal("12.083335") and bob.source_amount == Decimal("12.0833")
    assert bob.delta == Decimal("0.000035") and bob.status == "match"
    assert rows[F.DEP_BAD_CYCLE].status == "missing_in_fusion" and rows[F.DEP_BAD_CYCLE].fusion_amount is None
    assert rows[F.DEP_FREE].status == "missing_in_source" and rows[F.DEP_FREE].period_start == OCT

    with target.open() as stream:
        lines = list(csv.DictReader(stream))
    assert list(lines[0]) == ["service", "external_subscription_id", "period_start", "period_end",
                              "fusion_amount", "source_amount", "delta", "status"]
    assert {line["external_subscription_id"] for line in lines} == set(rows)
    assert next(line for line in lines if line["external_subscription_id"] == F.DEP_BOB_STARTER)["delta"] == "0.000035"


def test_two_subscriptions_of_one_customer_keep_two_rows(imported, nexacloud_dsn):
    call_command("reconcile", service="nexacloud", dsn=nexacloud_dsn, period_start="2026-10-01", stdout=StringIO())
    call_command("reconcile", service="nexacloud", dsn=nexacloud_dsn, period_start="2026-10-01", stdout=StringIO())
    rows = by_sub()
    starter, pro = rows[F.DEP_ALICE_STARTER], rows[F.DEP_ALICE_PRO]
    assert starter.customer_id == pro.customer_id and starter.period_start == pro.period_start == OCT
    assert (starter.fusion_amount, pro.fusion_amount) == (Decimal("12.750000"), Decimal("49.000000"))
    assert Reconciliation.objects.count() == 5  # upserted, not duplicated


def _bill(overage: str, flat: str = "12.00") -> SourceBilledPeriod:
    return SourceBilledPeriod(deployment_id=F.DEP_ALICE_STARTER, period_start=OCT, period_end=date(2026, 11, 1),
                              flat_amount=Decimal(flat), cpu_seconds=720_000, overage_amount=Decimal(overage),
                              currency="CAD")


@pytest.mark.parametrize(("overage", "status", "delta"), [
    ("0.7500", "match", "0"),
    ("0.7400", "match", "0.01"),        # fusion is 0.01 above: exactly the tolerance
    ("0.7600", "match", "-0.01"),       # 0.01 below
    ("0.7399", "mismatch", "0.0101"),   # one 4-dp step beyond
    ("0.7601", "mismatch", "-0.0101"),
])
def test_tolerance_boundaries(imported, overage, status, delta):
    reconcile_rows(service=imported, billed=[_bill(overage)], period_start=OCT)
    row = Reconciliation.objects.get(external_subscription_id=F.DEP_ALICE_STARTER)
    assert (row.status, row.delta) == (status, Decimal(delta))


def test_tolerance_is_configurable(imported, settings):
    settings.MIGRATION_RECONCILIATION_TOLERANCE = Decimal("0.001")
    reconcile_rows(service=imported, billed=[_bill("0.7400")], period_start=OCT)
    assert Reconciliation.objects.get(external_subscription_id=F.DEP_ALICE_STARTER).status == "mismatch"
    reconcile_rows(service=imported, billed=[_bill("0.7400")], period_start=OCT, tolerance=Decimal("0.02"))
    assert Reconciliation.objects.get(external_subscription_id=F.DEP_ALICE_STARTER).status == "match"


def test_reconcile_command_errors_are_clean(db, nexacloud_dsn):
    with pytest.raises(CommandError, match="'nexacloud' service does not exist"):
        call_command("reconcile", service="nexacloud", dsn=nexacloud_dsn, stdout=StringIO())
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("reconcile", service="nexacloud", period_start="10/2026", stdout=StringIO())


def test_terminated_predecessor_does_not_duplicate_the_period(imported, nexacloud_dsn):
    current = Subscription.objects.get(external_id=F.DEP_FREE)
    Subscription.objects.create(
        service=imported, account_link=current.account_link, external_id=F.DEP_FREE, plan=current.plan,
        status="terminated", mode="shadow", billing_time="anniversary", started_at=current.started_at,
        billing_anchor=current.billing_anchor, current_period_start=current.current_period_start,
        current_period_end=current.current_period_end, flat_amount=Decimal("1"), currency="CAD")
    call_command("reconcile", service="nexacloud", dsn=nexacloud_dsn, stdout=StringIO())
    row = Reconciliation.objects.get(external_subscription_id=F.DEP_FREE)
    assert row.subscription == current and row.status == "missing_in_source"


def test_nightly_task_reconciles_from_the_configured_source(imported, nexacloud_dsn, settings):
    from migration.tasks import reconcile_nightly

    settings.NEXACLOUD_DSN = nexacloud_dsn
    assert reconcile_nightly.apply(kwargs={"service_code": "nexacloud"}).get() == {
        "match": 3, "mismatch": 0, "missing_in_fusion": 1, "missing_in_source": 1}
    assert "migration-reconcile-nexacloud-nightly" in settings.CELERY_BEAT_SCHEDULE
