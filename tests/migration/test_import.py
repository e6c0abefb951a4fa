"""The importer end to end against a real PostgreSQL source database."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from identity.models import AccountLink, Customer
from metering.models import Charge, Plan, Subscription, UsageEvent
from migration.models import ImportFailure, ImportRun, ImportRunStatus
from migration.services import import_nexacloud
from migration.testing.source_db import Fixture as F
from migration.writer import usage_transaction_id

pytestmark = pytest.mark.django_db


def counts(run: ImportRun, entity: str) -> dict:
    return run.counts[entity]


def test_first_import_counts_and_rows(service, nexacloud_dsn, caplog):
    with caplog.at_level(logging.ERROR, logger="migration.import"):
        run = import_nexacloud(dsn=nexacloud_dsn)
    assert run.status == ImportRunStatus.ROWS_FAILED and run.banner == "red"
    assert counts(run, "plans") == {"created": 4, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    assert counts(run, "users") == {"created": 4, "updated": 0, "unchanged": 0, "skipped": 1, "failed": 0}
    assert counts(run, "deployments") == {"created": 5, "updated": 0, "unchanged": 0, "skipped": 2, "failed": 3}
    # 200 + 100 + 101 + 10 for imported deployments; the orphan's and the deleted one's are skipped.
    assert counts(run, "usage") == {"created": 411, "updated": 0, "unchanged": 0, "skipped": 8, "failed": 0}

    failures = {f.key: f for f in ImportFailure.objects.filter(run=run)}
    assert set(failures) == set(F.FAILED_DEPLOYMENTS)
    assert failures[F.DEP_BAD_CYCLE].exception_type == "UnknownBillingCycle"
    assert "'weekly'" in failures[F.DEP_BAD_CYCLE].message
    assert failures[F.DEP_NULL_PRICE].exception_type == "PriceNotSoldOnCycle"
    assert failures[F.DEP_ORPHAN].exception_type == "UnknownUser"
    assert "Traceback" in failures[F.DEP_ORPHAN].traceback
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert {F.DEP_BAD_CYCLE, F.DEP_NULL_PRICE, F.DEP_ORPHAN} <= {k for r in logged for k in r.args if isinstance(k, str)}

    # Plans: one per priced cycle; NULL prices make no plan, 0.00 is a real free plan.
    assert set(Plan.objects.values_list("code", flat=True)) == {"nc-starter", "nc-starter-yearly", "nc-pro", "nc-free"}
    assert Plan.objects.get(code="nc-free").amount == Decimal("0")
    charge = Charge.objects.get(plan__code="nc-pro")
    assert (charge.charge_model, charge.amount, charge.unit_batch, charge.free_units) == (
        "standard", Decimal("0.0075"), Decimal(3600), Decimal(3_600_000))
    assert charge.metric.code == "cpu_seconds" and charge.metric.aggregation_type == "sum_agg"

    # Users: the mixed-case duplicate email folds onto one customer; stripe id stashed.
    alice_links = AccountLink.objects.filter(external_id__in=[F.USER_ALICE, F.USER_ALICE_UPPER])
    assert alice_links.count() == 2 and len({link.customer_id for link in alice_links}) == 1
    alice = AccountLink.objects.get(external_id=F.USER_ALICE)
    assert alice.stripe_customer_id == "cus_alice" and alice.legal_name == "Acme Inc."
    assert not AccountLink.objects.filter(external_id=F.USER_DELETED).exists()
    assert Customer.objects.count() == 3

    # Deployments: shadow subscriptions, flat price explicit, window from the source.
    subs = {s.external_id: s for s in Subscription.objects.all()}
    assert set(subs) == set(F.GOOD_DEPLOYMENTS)
    assert all(s.mode == "shadow" for s in subs.values())
    yearly = subs[F.DEP_ALICE_YEARLY]
    assert yearly.plan.code == "nc-starter-yearly" and yearly.flat_amount == Decimal("120.00")
    assert yearly.account_link.customer_id == alice.customer_id
    assert yearly.current_period_start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert yearly.current_period_end == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert subs[F.DEP_FREE].flat_amount == Decimal("0")

    event = UsageEvent.objects.get(
        transaction_id=usage_transaction_id(F.DEP_BOB_STARTER, datetime(2026, 10, 5, 4, tzinfo=timezone.utc)))
    assert event.value == Decimal(1) and event.properties == {"cpu_seconds": 1} and event.code == "cpu_seconds"
    assert event.subscription == subs[F.DEP_BOB_STARTER]


def test_rerun_creates_nothing_and_rewrites_only_mirror_fields(service, nexacloud_dsn):
    import_nexacloud(dsn=nexacloud_dsn)
    sub = Subscription.objects.get(external_id=F.DEP_ALICE_STARTER)
    original = (sub.account_link_id, sub.plan_id, sub.flat_amount)
    # Local edits to set-at-creation fields survive; mirror fields are restored.
    Subscription.objects.filter(pk=sub.pk).update(flat_amount=Decimal("99"), name="renamed locally")
    before = (Customer.objects.count(), AccountLink.objects.count(), Plan.objects.count(),
              Subscription.objects.count(), UsageEvent.objects.count())

    rerun = import_nexacloud(dsn=nexacloud_dsn)

    after = (Customer.objects.count(), AccountLink.objects.count(), Plan.objects.count(),
             Subscription.objects.count(), UsageEvent.objects.count())
    assert after == before
    assert rerun.total("created") == 0
    assert rerun.counts["deployments"] == {"created": 0, "updated": 1, "unchanged": 4, "skipped": 2, "failed": 3}
    assert rerun.counts["usage"]["unchanged"] == 411
    sub.refresh_from_db()
    assert sub.name == "alice-web" and sub.flat_amount == Decimal("99")
    assert (sub.account_link_id, sub.plan_id) == original[:2]


def test_dry_run_leaves_nothing_and_reports_the_same_counts(service, nexacloud_dsn):
    dry = import_nexacloud(dsn=nexacloud_dsn, dry_run=True)
    assert dry.dry_run and dry.status == ImportRunStatus.ROWS_FAILED
    assert (Customer.objects.count(), AccountLink.objects.count(), Plan.objects.count(),
            Subscription.objects.count(), UsageEvent.objects.count()) == (0, 0, 0, 0, 0)
    assert ImportFailure.objects.filter(run=dry).count() == 3  # the report itself survives
    real = import_nexacloud(dsn=nexacloud_dsn)
    assert real.counts == dry.counts


def test_missing_service_is_one_clear_error(db, nexacloud_dsn):
    run = import_nexacloud(dsn=nexacloud_dsn)
    assert run.status == ImportRunStatus.FAILED and run.banner == "red"
    assert "'nexacloud' service does not exist" in run.fatal_error
    assert not ImportFailure.objects.exists()


def test_unreachable_source_is_a_clean_fatal_error(service):
    run = import_nexacloud(dsn="postgresql://nexa:pw@127.0.0.1:1/nexacloud")
    assert run.status == ImportRunStatus.FAILED
    assert run.fatal_error.startswith("Cannot connect to the NexaCloud source")
    assert "pw@" not in run.fatal_error and "pw@" not in run.source
