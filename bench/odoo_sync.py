"""Benchmark: push N live subscriptions with their usage lines into the fake Odoo over HTTP.

    DATABASE_URL=postgres://.../fb_odoo DJANGO_DEBUG=1 python bench/odoo_sync.py --scale 10000

Prints RPC round trips per 100 records written to Odoo (goal <= 3; batching
search_read, multi-record create and ``load``) and records/s, for: the initial push; a
cycle with nothing changed (change-driven: goal <= 2 s at 10,000 subscriptions, 0 RPCs);
the same as a full sweep (the old walk over every subscription: the baseline, measured
in the same run); a cycle where every pushed usage line changed (re-rated: one write per
line before, goal <= 3 RPCs per 100 lines); a cycle where the next window of one charge
closed (one new line per subscription). Cycles run without a time budget (the whole
change log). Uses its own service code (``bench-odoo``) in the database given, deleting
its previous data.

Runs against an older checkout too (no change log there: every cycle is the full walk).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

import django  # noqa: E402

django.setup()

import datetime as dt  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.models import F  # noqa: E402

from identity.models import AccountLink, Customer, Service  # noqa: E402
from metering.models import (  # noqa: E402
    AggregationType,
    BillableMetric,
    Charge,
    ChargeModel,
    Plan,
    RatedUsage,
    Subscription,
)
from odoo_bridge.client import OdooSettings, reset_client  # noqa: E402
from odoo_bridge.models import OdooConnectionState, OdooSyncState  # noqa: E402
import inspect  # noqa: E402

from odoo_bridge.models import SyncKind  # noqa: E402
from odoo_bridge.sync import push_cycle, resync  # noqa: E402
from odoo_bridge.testing import FakeOdoo  # noqa: E402

UTC = dt.timezone.utc
START, END = dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC)
CODE = "bench-odoo"


def reset() -> None:
    service = Service.objects.filter(code=CODE).first()
    if service is None:
        return
    subs = Subscription.objects.filter(service=service)
    RatedUsage.objects.filter(subscription__in=subs).delete()
    OdooSyncState.objects.all().delete()
    customers = list(AccountLink.objects.filter(service=service).values_list("customer_id", flat=True))
    service.invoices.all().delete()
    subs.delete()
    AccountLink.objects.filter(service=service).delete()
    Customer.objects.filter(pk__in=customers).delete()
    Charge.objects.filter(plan__service=service).delete()
    Plan.objects.filter(service=service).delete()
    BillableMetric.objects.filter(service=service).delete()
    OdooConnectionState.objects.all().delete()
    if CHANGE_DRIVEN:
        from odoo_bridge.models import OdooPushChange
        OdooPushChange.objects.all().delete()


@transaction.atomic
def seed(scale: int) -> list[Charge]:
    service, _ = Service.objects.get_or_create(code=CODE, defaults={"name": "Odoo bench"})
    calls = BillableMetric.objects.create(service=service, code="api_calls", name="API calls",
                                          aggregation_type=AggregationType.SUM, field_name="calls")
    cpu = BillableMetric.objects.create(service=service, code="cpu", name="CPU core-hours",
                                        aggregation_type=AggregationType.SUM, field_name="cpu")
    plan = Plan.objects.create(service=service, code="pro", name="Pro", interval="monthly", amount=Decimal("49"),
                               amount_currency="CAD")
    charges = [Charge.objects.create(plan=plan, metric=calls, charge_model=ChargeModel.STANDARD, amount=Decimal("0.02")),
               Charge.objects.create(plan=plan, metric=cpu, charge_model=ChargeModel.STANDARD,
                                     amount=Decimal("0.0075"))]
    customers = Customer.objects.bulk_create([Customer(email=f"bench{i}@example.test") for i in range(scale)])
    links = AccountLink.objects.bulk_create([AccountLink(service=service, external_id=f"acct-{i}", customer=c,
                                                         name=f"Bench {i}", country="CA", state="ON",
                                                         sequential_id=i + 1)
                                             for i, c in enumerate(customers)])
    subs = Subscription.objects.bulk_create([Subscription(
        service=service, account_link=link, external_id=f"sub-{i}", plan=plan, started_at=START, subscription_at=START,
        billing_anchor=START, current_period_start=START, current_period_end=END, flat_amount=Decimal("49"),
        currency="CAD") for i, link in enumerate(links)])
    RatedUsage.objects.bulk_create([RatedUsage(subscription=s, charge=ch, window_start=START, window_end=END,
                                               units=Decimal(100 + i), billable_units=Decimal(100 + i),
                                               amount=Decimal(100 + i) * ch.amount, state="frozen")
                                    for i, s in enumerate(subs) for ch in charges])
    return charges


CHANGE_DRIVEN = "full" in inspect.signature(push_cycle).parameters


def run(label: str, fake: FakeOdoo, settings_: OdooSettings, batch_size: int, *, full: bool = False,
        lines_changed: int = 0) -> dict:
    fake.reset_counters()
    kwargs = {"full": full, "budget_seconds": None} if CHANGE_DRIVEN else {}
    started = time.perf_counter()
    report = push_cycle(settings_=settings_, batch_size=batch_size, **kwargs)
    seconds = time.perf_counter() - started  # ok-float: timing
    trips = fake.call_count()
    written = report.records_written
    per_100 = trips / written * 100 if written else float("nan")  # ok-float: ratio
    extra = f" per_100_changed_lines={trips / lines_changed * 100:6.2f}" if lines_changed else ""  # ok-float
    print(f"{label:<34} subs_examined={report.subscriptions_seen:>6} written={written:>6} round_trips={trips:>5} "
          f"per_100_records={per_100:6.2f}{extra} "
          f"records/s={written / seconds if seconds else 0:8.0f} seconds={seconds:7.2f}"
          + (f" ABORTED {report.aborted}" if report.aborted else ""))
    return {"trips": trips, "written": written, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10000, help="live subscriptions (2 usage lines each)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--odoo-version", default="17.0")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    reset()
    seed_started = time.perf_counter()
    charges = seed(args.scale)
    print(f"seeded {args.scale} subscriptions x 2 usage lines in {time.perf_counter() - seed_started:.1f}s; "
          f"batch size {args.batch_size}; fake Odoo {args.odoo_version} over HTTP on 127.0.0.1")
    with FakeOdoo(version=args.odoo_version) as fake:
        reset_client()
        settings_ = OdooSettings(url=fake.url, db=fake.db, user=fake.login, api_key=fake.api_key,
                                 timeout_seconds=120)
        first = run("initial push", fake, settings_, args.batch_size, full=True)
        run("nothing changed", fake, settings_, args.batch_size)
        run("nothing changed, full sweep (old walk)", fake, settings_, args.batch_size, full=True)
        # every pushed usage line changes before invoicing (re-rated, and its rows resynced, as ops do after a
        # correction): the cycle finds each line in Odoo and rewrites it; one write per line before
        frozen = RatedUsage.objects.filter(subscription__service__code=CODE)
        changed = 0
        for charge in charges:
            changed += frozen.filter(charge=charge).update(units=F("units") + 1, billable_units=F("billable_units") + 1,
                                                           amount=F("amount") + charge.amount)
        resync(OdooSyncState.objects.filter(kind=SyncKind.USAGE))
        run("every usage line changed", fake, settings_, args.batch_size, lines_changed=changed)
        # the next window of one charge closes: one new line per subscription (only closed windows go)
        following = dt.datetime(2027, 1, 1, tzinfo=UTC)
        RatedUsage.objects.bulk_create([RatedUsage(
            subscription=u.subscription, charge=u.charge, window_start=END, window_end=following, units=u.units,
            billable_units=u.billable_units, amount=u.amount, state="frozen")
            for u in RatedUsage.objects.filter(charge=charges[0]).select_related("subscription", "charge")])
        run("next window of one charge closed", fake, settings_, args.batch_size)
        run("nothing changed", fake, settings_, args.batch_size)
        orders = len(fake.store.records["sale.order"])
        lines = len(fake.store.records["sale.order.line"])
        print(f"odoo now holds {orders} orders, {lines} order lines, "
              f"{len(fake.store.records['res.partner'])} partners; top calls of the initial push were batched "
              f"(median {statistics.median([first['written'] / max(first['trips'], 1)]):.0f} records per call)")
    reset_client()


if __name__ == "__main__":
    main()
