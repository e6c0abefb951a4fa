"""The writer on its own: in-memory source rows, no source database."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from identity.models import AccountLink, Customer
from metering.models import Subscription, UsageEvent
from migration.reader import SourceDeployment, SourcePlan, SourceUsageHour, SourceUser
from migration.writer import StaticSource, usage_payload_hash, usage_transaction_id, write_import

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


def user(uid: str, email: str, **kw) -> SourceUser:
    return SourceUser(id=uid, email=email, full_name=kw.get("name"), company=None,
                      stripe_customer_id=kw.get("stripe"), created_at=T0, deleted_at=kw.get("deleted_at"))


def deployment(did: str, uid: str, cycle: str = "monthly", status: str = "active", plan: int = 1) -> SourceDeployment:
    return SourceDeployment(id=did, user_id=uid, plan_id=plan, name=did, billing_cycle=cycle, status=status,
                            created_at=T0, current_period_start=date(2026, 11, 1), current_period_end=date(2026, 12, 1))


PLAN = SourcePlan(id=1, code="nc-a", name="A", price_monthly=Decimal("5.00"), price_yearly=None,
                  cpu_seconds_quota=10, currency="CAD", active=True)


def test_existing_customer_matched_case_insensitively_and_stripe_id_stashed(service):
    existing = Customer.objects.create(email="Dana@Example.com")
    report = write_import(service=service, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "dana@EXAMPLE.com", stripe="cus_dana")]))
    assert report.counts["users"]["created"] == 1 and Customer.objects.count() == 1
    link = AccountLink.objects.get(external_id="u1")
    # folded into the known client, but the Stripe customer is the imported account's own
    assert link.customer == existing and link.stripe_customer_id == "cus_dana" and link.sequential_id == 1


def test_yearly_deployment_on_monthly_only_plan_fails_never_falls_back(service):
    report = write_import(service=service, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")],
        deployment_rows=[deployment("d1", "u1", cycle="yearly"), deployment("d2", "u1", cycle="Monthly")]))
    assert report.counts["deployments"]["failed"] == 2 and not Subscription.objects.exists()
    assert [f.exception_type for f in report.failures] == ["PriceNotSoldOnCycle", "UnknownBillingCycle"]


def test_deleting_a_user_or_deployment_is_mirrored_on_rerun(service):
    source = StaticSource(plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")], deployment_rows=[deployment("d1", "u1")])
    write_import(service=service, source=source)
    source.user_rows = [user("u1", "a@x.io", deleted_at=T0)]
    source.deployment_rows = [deployment("d1", "u1", status="deleted")]
    report = write_import(service=service, source=source)
    assert report.counts["users"]["updated"] == 1 and report.counts["deployments"]["updated"] == 1
    assert AccountLink.objects.get(external_id="u1").deleted_at == T0
    assert Subscription.objects.get(external_id="d1").status == "terminated"


def test_usage_is_inserted_once_with_deterministic_ids(service):
    usage = [SourceUsageHour("d1", T0, 7200), SourceUsageHour("d1", T0.replace(hour=1), 3600),
             SourceUsageHour("unknown", T0, 1)]
    source = StaticSource(plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")],
                          deployment_rows=[deployment("d1", "u1")], usage_rows=usage)
    first = write_import(service=service, source=source)
    second = write_import(service=service, source=source)
    assert first.counts["usage"] == {"created": 2, "updated": 0, "unchanged": 0, "skipped": 1, "failed": 0}
    assert second.counts["usage"] == {"created": 0, "updated": 0, "unchanged": 2, "skipped": 1, "failed": 0}
    event = UsageEvent.objects.get(transaction_id=usage_transaction_id("d1", T0))
    assert event.transaction_id == "nc-d1-20261001T0000" and event.value == Decimal(7200)
    assert event.payload_hash == usage_payload_hash(hour_start=T0, cpu_seconds=7200)
    assert event.external_subscription_id == "d1" and event.timestamp == T0


def test_usage_of_the_hour_in_progress_is_left_for_the_next_run(service):
    now = datetime(2026, 10, 1, 1, 30, tzinfo=timezone.utc)
    usage = [SourceUsageHour("d1", T0, 10), SourceUsageHour("d1", T0.replace(hour=1), 5)]
    report = write_import(service=service, now=now, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")], deployment_rows=[deployment("d1", "u1")],
        usage_rows=usage))
    assert report.counts["usage"]["created"] == 1


def test_dry_run_rolls_back(service):
    report = write_import(service=service, dry_run=True, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")], deployment_rows=[deployment("d1", "u1")]))
    assert report.counts["deployments"]["created"] == 1 and not Subscription.objects.exists()
    assert not Customer.objects.exists()


def test_usage_of_a_live_subscription_is_not_imported_again(service):
    source = StaticSource(plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")],
                          deployment_rows=[deployment("d1", "u1")], usage_rows=[SourceUsageHour("d1", T0, 10)])
    write_import(service=service, source=source)
    Subscription.objects.filter(external_id="d1").update(mode="live")
    source.usage_rows.append(SourceUsageHour("d1", T0.replace(hour=1), 20))
    report = write_import(service=service, source=source)
    assert report.counts["usage"]["skipped"] == 2 and UsageEvent.objects.count() == 1
    assert report.counts["deployments"]["unchanged"] == 1


def test_an_imported_hour_resent_through_the_api_is_an_identical_resend(service, api_client):
    # The go-live overlap: NexaCloud starts sending usage to the API while the last
    # import's hours are already stored; the same hour must be recognised, not refused.
    now = datetime.now(timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    dep = SourceDeployment(id="d1", user_id="u1", plan_id=1, name="d1", billing_cycle="monthly", status="active",
                           created_at=hour - timedelta(days=1), current_period_start=(hour - timedelta(days=1)).date(),
                           current_period_end=(hour + timedelta(days=29)).date())
    write_import(service=service, now=now, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")], deployment_rows=[dep],
        usage_rows=[SourceUsageHour("d1", hour, 7200)]))

    def resend(cpu_seconds: int):
        return api_client.post("/api/v1/events", {"event": {
            "transaction_id": usage_transaction_id("d1", hour), "external_subscription_id": "d1",
            "code": "cpu_seconds", "timestamp": int(hour.timestamp()), "properties": {"cpu_seconds": cpu_seconds},
        }}, format="json")

    same = resend(7200)
    assert same.status_code == 200, same.content
    different = resend(7201)
    assert different.status_code == 422
    assert different.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert UsageEvent.objects.get().value == Decimal(7200)


def test_a_bad_usage_row_fails_alone_and_its_batch_is_still_imported(service):
    hours = [T0, T0.replace(hour=1), T0.replace(hour=2)]
    report = write_import(service=service, source=StaticSource(
        plan_rows=[PLAN], user_rows=[user("u1", "a@x.io")], deployment_rows=[deployment("d1", "u1")],
        usage_rows=[SourceUsageHour("d1", hours[0], 10), SourceUsageHour("d1", hours[1], 2**63),  # > bigint
                    SourceUsageHour("d1", hours[2], 30)]))
    assert report.counts["usage"] == {"created": 2, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 1}
    assert [f.key for f in report.failures] == [usage_transaction_id("d1", hours[1])]
    assert sorted(UsageEvent.objects.values_list("value", flat=True)) == [Decimal(10), Decimal(30)]
