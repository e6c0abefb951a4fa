"""The database itself refuses what must never be stored (not just Python validation)."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from identity.models import AccountLink, Customer
from metering.models import (
    BillableMetric,
    Charge,
    ChargeTier,
    Plan,
    Subscription,
    UsageEvent,
    UsageEventKey,
)

pytestmark = pytest.mark.django_db


def refused(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


@pytest.fixture
def catalogue(service):
    metric = BillableMetric.objects.create(service=service, code="cpu", name="CPU", aggregation_type="sum_agg",
                                           field_name="cpu_seconds")
    plan = Plan.objects.create(service=service, code="starter", name="Starter", interval="monthly",
                               amount=Decimal("10"), amount_currency="CAD")
    customer = Customer.objects.create(email="ops@acme.test")
    link = AccountLink.objects.create(service=service, external_id="u-1", customer=customer, name="Acme",
                                      sequential_id=1)
    return metric, plan, link


def subscription(service, plan, link, **overrides):
    values = dict(service=service, account_link=link, external_id="dep-1", plan=plan, flat_amount=Decimal("10"),
                  currency="CAD")
    values.update(overrides)
    return Subscription.objects.create(**values)


def test_account_link_is_unique_per_service(service, other_service, catalogue):
    _, _, link = catalogue
    assert refused(lambda: AccountLink.objects.create(service=service, external_id="u-1", customer=link.customer,
                                                      sequential_id=2))
    # Lago's per-organization numbering: one number per service, reused by another service
    assert refused(lambda: AccountLink.objects.create(service=service, external_id="u-2", customer=link.customer,
                                                      sequential_id=1))
    AccountLink.objects.create(service=other_service, external_id="u-1", customer=link.customer, sequential_id=1)


def test_customer_email_is_unique_case_insensitively(db):
    Customer.objects.create(email="Ann@Example.com")
    assert refused(lambda: Customer.objects.create(email="ann@example.COM"))
    Customer.objects.create(email="")
    Customer.objects.create(email="")  # customers without an email are not merged


def test_metric_and_plan_codes_are_unique_per_service(service, other_service, catalogue):
    assert refused(lambda: BillableMetric.objects.create(service=service, code="cpu", name="x",
                                                         aggregation_type="count_agg"))
    assert refused(lambda: Plan.objects.create(service=service, code="starter", name="x", interval="monthly",
                                               amount=1, amount_currency="CAD"))
    Plan.objects.create(service=other_service, code="starter", name="x", interval="monthly", amount=1,
                        amount_currency="CAD")


def test_only_one_open_subscription_per_external_id(service, catalogue):
    _, plan, link = catalogue
    first = subscription(service, plan, link)
    assert refused(lambda: subscription(service, plan, link))
    first.status = "terminated"
    first.save()
    subscription(service, plan, link)  # a terminated one no longer blocks


def test_usage_event_transaction_is_unique_across_partitions(service, catalogue):
    """The key table holds the rule for the partitioned events table: the same key under
    a timestamp of another month (another partition) is refused too."""
    _, plan, link = catalogue
    sub = subscription(service, plan, link)

    def event(timestamp):
        stored = UsageEvent.objects.create(service=service, subscription=sub, external_subscription_id="dep-1",
                                           code="cpu", transaction_id="tx-1", timestamp=timestamp,
                                           payload_hash="0" * 64)
        return UsageEventKey.objects.create(service=service, transaction_id="tx-1", external_subscription_id="dep-1",
                                            event_id=stored.pk, timestamp=timestamp, payload_hash="0" * 64)

    event(timezone.now())
    assert refused(lambda: event(timezone.now() - timedelta(days=62)))


@pytest.mark.parametrize("field, value", [
    ("amount", Decimal("-0.01")), ("free_units", Decimal("-1")), ("unit_batch", Decimal("0")),
    ("package_size", Decimal("0")),
])
def test_charge_prices_and_sizes_are_checked(catalogue, field, value):
    metric, plan, _ = catalogue
    values = dict(plan=plan, metric=metric, charge_model="standard", amount=Decimal("1"))
    values[field] = value
    assert refused(lambda: Charge.objects.create(**values))


def test_package_charge_needs_a_package_size(catalogue):
    metric, plan, _ = catalogue
    assert refused(lambda: Charge.objects.create(plan=plan, metric=metric, charge_model="package",
                                                 amount=Decimal("5")))


def test_negative_plan_price_and_missing_currency_are_refused(service):
    assert refused(lambda: Plan.objects.create(service=service, code="neg", name="n", interval="monthly",
                                               amount=Decimal("-1"), amount_currency="CAD"))
    assert refused(lambda: Plan.objects.create(service=service, code="nocur", name="n", interval="monthly",
                                               amount=Decimal("1"), amount_currency=""))


def test_negative_tier_price_is_refused(catalogue):
    metric, plan, _ = catalogue
    charge = Charge.objects.create(plan=plan, metric=metric, charge_model="graduated")
    assert refused(lambda: ChargeTier.objects.create(charge=charge, position=0, from_value=0,
                                                     per_unit_amount=Decimal("-0.5")))


def test_sub_cent_rate_is_stored_exactly(catalogue):
    metric, plan, _ = catalogue
    charge = Charge.objects.create(plan=plan, metric=metric, charge_model="standard", amount=Decimal("0.0075"),
                                   unit_batch=Decimal(3600))
    with connection.cursor() as cursor:
        cursor.execute("SELECT amount::text FROM metering_charge WHERE id = %s", [charge.pk])
        assert Decimal(cursor.fetchone()[0]) == Decimal("0.0075")
    charge.refresh_from_db()
    assert charge.amount == Decimal("0.0075")
