"""Run by ``manage.py shell`` on a database migrated to metering 0008 (before partitioning):
stores events across several months through the models of that migration state, and
prints them as JSON (what the partitioning migration must preserve)."""
import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.db import connection
from django.db.migrations.loader import MigrationLoader

apps = MigrationLoader(connection).project_state(("metering", "0008_catalogue_rounding_min_amount_window_terms")).apps
Service = apps.get_model("identity", "Service")
Customer = apps.get_model("identity", "Customer")
AccountLink = apps.get_model("identity", "AccountLink")
Plan = apps.get_model("metering", "Plan")
Subscription = apps.get_model("metering", "Subscription")
UsageEvent = apps.get_model("metering", "UsageEvent")

service = Service.objects.create(code="old", name="Old")
customer = Customer.objects.create(name="C", currency="CAD")
link = AccountLink.objects.create(service=service, external_id="acct", customer=customer)
plan = Plan.objects.create(service=service, code="p", name="P", interval="monthly", amount=Decimal("1"),
                           amount_currency="CAD")
start = datetime(2025, 10, 1, tzinfo=timezone.utc)
sub = Subscription.objects.create(service=service, account_link=link, external_id="dep", plan=plan,
                                  flat_amount=Decimal("1"), currency="CAD", started_at=start)
rows = []
for n, moment in enumerate([start, start + timedelta(days=40), start + timedelta(days=75, hours=3),
                            datetime(2024, 1, 15, tzinfo=timezone.utc)]):
    event = UsageEvent.objects.create(
        service=service, subscription=sub, external_subscription_id="dep", code="cpu", transaction_id=f"tx-{n}",
        timestamp=moment, properties={"cpu": n}, value=Decimal(n) + Decimal("0.25"),
        payload_hash=hashlib.sha256(str(n).encode()).hexdigest())
    rows.append([event.id, event.transaction_id, event.timestamp.isoformat(), str(event.value)])
print(json.dumps(rows))
