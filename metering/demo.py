"""A small, self-consistent catalogue to try the API against."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from identity import keys
from identity import services as identity_services
from identity.models import Service

from . import services
from .models import AggregationType, BillableMetric, Charge, ChargeModel, Plan, Subscription

DEMO_SERVICE = "demo"


@dataclass(frozen=True)
class DemoSeed:
    service: Service
    subscription: Subscription
    api_key: str


@transaction.atomic
def seed_demo() -> DemoSeed:
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
    issued = keys.issue_key(service=service, name="demo")
    return DemoSeed(service=service, subscription=subscription, api_key=issued.plaintext)
