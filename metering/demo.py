"""A small, self-consistent catalogue to try the API against."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from identity import keys
from identity import services as identity_services
from identity.models import Service

from . import rating, services
from .models import AggregationType, BillableMetric, Charge, ChargeModel, Plan, Subscription, UsageEvent

DEMO_SERVICE = "demo"


@dataclass(frozen=True)
class DemoSeed:
    service: Service
    subscription: Subscription
    api_key: str


@transaction.atomic
def seed_demo(*, history: bool = False) -> DemoSeed:
    service, _ = Service.objects.get_or_create(code=DEMO_SERVICE, defaults={"name": "Demo app"})
    metric, _ = BillableMetric.objects.get_or_create(
        service=service, code="cpu_seconds",
        defaults={"name": "CPU seconds", "aggregation_type": AggregationType.SUM, "field_name": "cpu_seconds"},
    )
    plan, _ = Plan.objects.get_or_create(
        service=service, code="demo-starter",
        defaults={"name": "Demo Starter", "interval": "monthly", "amount": Decimal("10.00"),
                  "amount_currency": "CAD"},
    )
    Charge.objects.get_or_create(
        plan=plan, metric=metric,
        defaults={"charge_model": ChargeModel.STANDARD, "amount": Decimal("0.0075"),
                  "unit_batch": Decimal(3600), "free_units": Decimal(3600)},
    )
    identity_services.upsert_customer(service=service, data={
        "external_id": "demo-customer", "email": "demo@example.com", "name": "Demo Customer", "currency": "CAD"})
    # Through the API's own rules (window anchor, idempotent on external_id and plan).
    subscription = services.create_subscription(service=service, data={
        "external_customer_id": "demo-customer", "plan_code": plan.code, "external_id": "demo-sub-1",
    }).subscription
    if history:
        _seed_usage_history(service=service, plan=plan)
    issued = keys.issue_key(service=service, name="demo")
    return DemoSeed(service=service, subscription=subscription, api_key=issued.plaintext)


HISTORY_HOURS = 72


def _seed_usage_history(*, service: Service, plan: Plan) -> None:
    """A second demo customer with three days of hourly usage, rated, so the ops console's
    dashboard and customer page have something to show. Idempotent (same transaction ids)."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    # Within the current calendar window, so that all of it is rated (and billed) there.
    start = max(now - timedelta(hours=HISTORY_HOURS), now.replace(day=1, hour=0))
    identity_services.upsert_customer(service=service, data={
        "external_id": "demo-fleet", "email": "fleet@example.com", "name": "Demo Fleet Ltd", "currency": "CAD"})
    subscription = services.create_subscription(service=service, data={
        "external_customer_id": "demo-fleet", "plan_code": plan.code, "external_id": "demo-fleet-1",
        "subscription_at": start,
    }).subscription
    events = []
    for hour in range(int((now - start).total_seconds()) // 3600):
        at = start + timedelta(hours=hour, minutes=30)
        cpu_seconds = 1800 + (hour * 37) % 2400  # a plausible daily wave, deterministic
        events.append(UsageEvent(
            service=service, subscription=subscription, external_subscription_id=subscription.external_id,
            code="cpu_seconds", transaction_id=f"demo-history-{hour}", timestamp=at,
            properties={"cpu_seconds": cpu_seconds}, value=Decimal(cpu_seconds),
            payload_hash=hashlib.sha256(f"demo-history-{hour}:{cpu_seconds}".encode()).hexdigest(), created_at=at,
        ))
    UsageEvent.objects.bulk_create(events, ignore_conflicts=True)
    transaction.on_commit(lambda: rating.rate_open_windows())
