"""Fixtures of the rating tests: a small catalogue builder and event loader."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest

from identity.models import AccountLink, Customer
from identity.services import allocate_account_number
from metering.models import BillableMetric, Charge, ChargeTier, Plan, Subscription, UsageEvent
from metering.pricing import charge_columns, parse_charge_properties

T0 = datetime(2026, 3, 1, tzinfo=dt_timezone.utc)
T1 = datetime(2026, 4, 1, tzinfo=dt_timezone.utc)
T2 = datetime(2026, 5, 1, tzinfo=dt_timezone.utc)

_counter = itertools.count()


@dataclass
class Catalogue:
    service: object

    def metric(self, code: str, aggregation_type: str = "sum_agg", field_name: str = "value") -> BillableMetric:
        metric, _ = BillableMetric.objects.get_or_create(
            service=self.service, code=code,
            defaults={"name": code, "aggregation_type": aggregation_type,
                      "field_name": "" if aggregation_type == "count_agg" else field_name},
        )
        return metric

    def plan(self, code: str, charges: list[tuple], interval: str = "monthly") -> Plan:
        """``charges``: (metric_code, aggregation_type, charge_model, properties[, field_name])."""
        plan = Plan.objects.create(service=self.service, code=code, name=code, interval=interval,
                                   amount=Decimal("10"), amount_currency="CAD")
        for spec in charges:
            metric_code, aggregation, model, props = spec[:4]
            field_name = spec[4] if len(spec) > 4 else "value"
            metric = self.metric(metric_code, aggregation, field_name)
            fields, tiers = charge_columns(parse_charge_properties(charge_model=model, properties=props))
            charge = Charge.objects.create(plan=plan, metric=metric, **fields)
            ChargeTier.objects.bulk_create(ChargeTier(charge=charge, **tier) for tier in tiers)
        return plan

    def subscription(self, plan: Plan, *, start: datetime = T0, end: datetime = T1, external_id: str | None = None,
                     **overrides) -> Subscription:
        n = next(_counter)
        customer = Customer.objects.create()
        number, slug = allocate_account_number(service=self.service)
        link = AccountLink.objects.create(service=self.service, external_id=f"acct-{n}", customer=customer,
                                          name=f"c{n}", sequential_id=number, slug=slug)
        values = dict(
            service=self.service, account_link=link, external_id=external_id or f"sub-{n}", plan=plan,
            flat_amount=Decimal("10"), currency="CAD", started_at=start, subscription_at=start,
            billing_time="anniversary", billing_anchor=start, current_period_start=start,
            current_period_end=end,
        )
        values.update(overrides)
        return Subscription.objects.create(**values)

    def events(self, subscription: Subscription, code: str, items: list[tuple]) -> list[UsageEvent]:
        """``items``: (timestamp, value) or (timestamp, value, properties)."""
        rows = []
        for item in items:
            timestamp, value = item[0], item[1]
            properties = item[2] if len(item) > 2 else ({"value": str(value)} if value is not None else {})
            n = next(_counter)
            rows.append(UsageEvent(
                service=subscription.service, subscription=subscription,
                external_subscription_id=subscription.external_id, code=code, transaction_id=f"tx-{n}",
                timestamp=timestamp, properties=properties,
                value=None if value is None else Decimal(str(value)),
                payload_hash=hashlib.sha256(str(n).encode()).hexdigest(),
            ))
        return UsageEvent.objects.bulk_create(rows)


@pytest.fixture
def catalogue(service) -> Catalogue:
    return Catalogue(service)


@pytest.fixture
def now_in_window() -> datetime:
    return T0 + timedelta(days=10)
