"""Ops console dashboard benchmark: server time of the admin home on a large events table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_console_bench SECRET_KEY=... ALLOWED_HOSTS=testserver \\
        python bench/dashboard.py [--events 10000000] [--services 3] [--subscriptions 600] [--runs 7] [--drop]

Use a throw-away database: it is created (if missing) and migrated, then loaded server-side
(``INSERT … SELECT generate_series``, in chunks of a million) with ``--events`` usage events
spread over the last 7 days in arrival order, ``--subscriptions`` live subscriptions over
``--services`` services, 12 months of rated windows per subscription and some webhook
attempts. Then it prints:

1. the first rollup refresh (the 8-day backfill the console's beat task does once) and an
   incremental refresh (what the task does every minute);
2. each dashboard query on its own;
3. the median and max server time of ``GET /admin/`` (the dashboard: health strip, five
   charts, top customers, rendered), through Django's test client in this process, with a
   fresh rollup (as a running worker keeps it).

Nothing is asserted. ``--drop`` drops the database at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

settings.DEBUG = False  # no per-query logging

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench._database import ensure_database  # noqa: E402

CHUNK = 1_000_000


def log(message: str) -> None:
    print(message, flush=True)


def load(*, events: int, services: int, subscriptions: int) -> None:
    from identity.models import AccountLink, Customer, Service
    from metering.models import BillableMetric, Charge, Plan, Subscription

    now = timezone.now()
    period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period_end = (period_start + timedelta(days=32)).replace(day=1)
    subs = []
    for s in range(services):
        service = Service.objects.create(code=f"bench-dash-{s}", name=f"Dashboard bench {s}")
        metric = BillableMetric.objects.create(service=service, code="cpu_seconds", name="CPU",
                                               aggregation_type="sum_agg", field_name="cpu_seconds")
        plan = Plan.objects.create(service=service, code="std", name="Standard", interval="monthly",
                                   amount=Decimal("10"), amount_currency="CAD")
        Charge.objects.create(plan=plan, metric=metric, charge_model="standard", amount=Decimal("0.0075"),
                              unit_batch=Decimal(3600))
        per_service = subscriptions // services
        customers = Customer.objects.bulk_create(
            [Customer(name=f"Bench {s}-{n}", email=f"b{s}-{n}@bench.test") for n in range(per_service)])
        links = AccountLink.objects.bulk_create(
            [AccountLink(service=service, external_id=f"acct-{s}-{n}", customer=c) for n, c in enumerate(customers)])
        subs += Subscription.objects.bulk_create([Subscription(
            service=service, account_link=link, external_id=f"dep-{s}-{n}", plan=plan, status="active", mode="live",
            started_at=period_start, billing_anchor=period_start, current_period_start=period_start,
            current_period_end=period_end, flat_amount=Decimal("10"), currency="CAD") for n, link in enumerate(links)])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_subs (idx int PRIMARY KEY, id uuid, service_id bigint, ext text)")
        cursor.executemany("INSERT INTO bench_subs VALUES (%s, %s, %s, %s)",
                           [(i, s.id, s.service_id, s.external_id) for i, s in enumerate(subs)])
        n_subs = len(subs)
        started = time.monotonic()
        for first in range(0, events, CHUNK):
            last = min(events, first + CHUNK)
            # created_at grows with g: rows arrive in time order over the last 7 days.
            cursor.execute(f"""
                INSERT INTO metering_usageevent (service_id, subscription_id, external_subscription_id, code,
                    transaction_id, timestamp, properties, value, payload_hash, created_at)
                SELECT s.service_id, s.id, s.ext, 'cpu_seconds', 'b' || g, t, '{{}}'::jsonb, 60, 'bench', t
                FROM generate_series({first}, {last - 1}) g
                JOIN bench_subs s ON s.idx = g % {n_subs}
                CROSS JOIN LATERAL (SELECT now() - interval '7 days' * (1 - g::float8 / {events}) AS t) ts
                ORDER BY g
            """)
            connection.commit() if not connection.get_autocommit() else None
            log(f"  {last:,} events loaded ({time.monotonic() - started:.0f}s)")
        cursor.execute("""
            INSERT INTO metering_ratedusage (subscription_id, charge_id, window_start, window_end, units,
                billable_units, amount, events_count, state, rated_at)
            SELECT s.id, c.id, date_trunc('month', now()) - make_interval(months => m),
                   date_trunc('month', now()) - make_interval(months => m - 1), 3600 * m, 3600 * m,
                   0.0075 * m, m, CASE WHEN m = 0 THEN 'open' ELSE 'frozen' END, now()
            FROM bench_subs s JOIN metering_subscription sub ON sub.id = s.id
            JOIN metering_charge c ON c.plan_id = sub.plan_id CROSS JOIN generate_series(0, 11) m
        """)
        # What autovacuum's autosummarize does as pages fill (a bulk load outruns it).
        cursor.execute("SELECT brin_summarize_new_values('console_usage_event_created_brin')")
        cursor.execute("ANALYZE metering_usageevent")
        cursor.execute("ANALYZE metering_ratedusage")


def timed(label: str, fn, runs: int = 1) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    median = statistics.median(samples)
    log(f"{label:<48} median {median:8.1f} ms  max {max(samples):8.1f} ms  ({runs} run(s))")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--services", type=int, default=3)
    parser.add_argument("--subscriptions", type=int, default=600)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    ensure_database(url)
    call_command("migrate", verbosity=0)
    from console import selectors, services
    from metering.models import UsageEvent

    if not UsageEvent.objects.exists():
        log(f"loading {args.events:,} events, {args.subscriptions} subscriptions, {args.services} services")
        load(events=args.events, services=args.services, subscriptions=args.subscriptions)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'metering_usageevent'")
        log(f"usage events in the table: ~{cursor.fetchone()[0]:,}")

    from console.models import DashboardRefresh, EventHourlyRollup

    EventHourlyRollup.objects.all().delete()
    DashboardRefresh.objects.all().delete()
    timed("rollup refresh, first (8-day backfill)", lambda: services.refresh_event_rollup(worker="bench"))
    timed("rollup refresh, incremental (beat, every minute)",
          lambda: services.refresh_event_rollup(worker="bench"), runs=3)
    now = timezone.now()
    timed("  health strip", lambda: selectors.health_strip(now=now, database_ok=True, broker_ok=True), args.runs)
    timed("  events per hour per service (7 days)", lambda: selectors.events_per_hour(now=now), args.runs)
    timed("  rated amount per service per month (12 months)", lambda: selectors.rated_per_month(now=now), args.runs)
    timed("  MRR by service", selectors.mrr_by_service, args.runs)
    timed("  webhook success rate", lambda: selectors.webhook_success_rate(now=now), args.runs)
    timed("  Odoo sync failures", lambda: selectors.odoo_sync_failures(now=now), args.runs)
    timed("  top customers", selectors.top_customers, args.runs)

    user, _ = User.objects.get_or_create(username="bench-ops", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    assert client.get("/admin/").status_code == 200  # warm-up
    services.refresh_event_rollup(worker="bench")
    timed("GET /admin/ (dashboard, server time)", lambda: client.get("/admin/"), args.runs)
    if args.drop:
        connection.close()
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}"')
        log(f"dropped {name}")


if __name__ == "__main__":
    main()
