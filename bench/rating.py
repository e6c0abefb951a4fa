"""Rating benchmark: N active subscriptions x 2 metered charges, M usage events.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_rating DJANGO_DEBUG=1 \\
        python bench/rating.py [--scale 1.0 [10 ...]] [--chunk-size 2000] [--workers 1 2] [--keep]

The database is created (if missing) and migrated first. Full scale
(``--scale 1``) is 100,000 subscriptions and 2,000,000 events. The data are
loaded with COPY under a dedicated service (``bench-rating``), then:

1. a single SQL ``GROUP BY`` over the same events (count, sum, max per
   subscription and metric, every row fetched) is timed — the floor any
   rating must pay to read the events. PostgreSQL runs it with parallel
   workers; how many is printed;
2. for each ``--workers`` value (default 1, then 2), ``rate_open_windows`` runs
   in that many child processes at once, each on one slice of the subscription
   ids as ``RATING_SHARDS`` does (so each peak RSS is a process's own):
   aggregation, exact pricing and the RatedUsage upsert of every window;
3. it runs again: nothing changed, so nothing is written (idempotency); the
   rated usage is then cleared for the next ``--workers`` value.

Prints medians, the rating / GROUP BY ratios and the cost per event; with several
``--scale`` values, the cost per event of each scale side by side (same run). The bench service's rows are
deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# Production runs without DEBUG: no per-query logging (it would also keep every
# statement in memory and distort the peak RSS).
settings.DEBUG = False

from django.db import connection, transaction  # noqa: E402

from bench._database import ensure_database  # noqa: E402
from identity.models import AccountLink, Service  # noqa: E402
from metering import rating, windows  # noqa: E402
from metering.models import BillableMetric, Charge, ChargeTier, Plan, RatedUsage  # noqa: E402
from metering.pricing import charge_columns, parse_charge_properties  # noqa: E402
from metering.services.partitions import ensure_event_partitions  # noqa: E402

SERVICE_CODE = "bench-rating"
FULL_SUBSCRIPTIONS = 100_000
EVENTS_PER_SUBSCRIPTION = 20  # 10 per metric -> 2,000,000 at full scale
PLANS = [
    # (code, cpu quota in CPU-seconds)
    ("small", 360_000),
    ("medium", 1_800_000),
    ("large", 7_200_000),
    ("payg", 0),
]
STORAGE_TIERS = {
    "graduated_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "0", "flat_amount": "0"},
        {"from_value": 10, "to_value": 100, "per_unit_amount": "0.12", "flat_amount": "0.5"},
        {"from_value": 100, "to_value": None, "per_unit_amount": "0.085", "flat_amount": "0"},
    ]
}


def log(message: str) -> None:
    print(message, flush=True)


def copy_rows(table: str, columns: list[str], lines) -> None:
    """COPY text-format ``lines`` (already tab-separated, newline-terminated) in 8 MB writes."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            buffer = io.StringIO()
            size = 0
            for line in lines:
                buffer.write(line)
                size += len(line)
                if size > 8_000_000:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
                    size = 0
            if size:
                copy.write(buffer.getvalue())


def ensure_migrated_database() -> None:
    """Create the PostgreSQL database named by DATABASE_URL if it is missing, and migrate it."""
    from django.core.management import call_command

    if connection.vendor != "postgresql":
        raise SystemExit("bench/rating.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    ensure_database(os.environ["DATABASE_URL"])
    call_command("migrate", verbosity=0)


def delete_bench_data() -> None:
    service = Service.objects.filter(code=SERVICE_CODE).first()
    if service is None:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        sid = service.id
        cursor.execute(
            "DELETE FROM metering_ratedusage r USING metering_subscription s "
            "WHERE r.subscription_id = s.id AND s.service_id = %s", [sid])
        cursor.execute("SELECT EXISTS (SELECT 1 FROM metering_usageevent WHERE service_id <> %s) "
                       "OR EXISTS (SELECT 1 FROM metering_usageeventkey WHERE service_id <> %s)", [sid, sid])
        if cursor.fetchone()[0]:
            cursor.execute("DELETE FROM metering_usageevent WHERE service_id = %s", [sid])
            cursor.execute("DELETE FROM metering_usageeventkey WHERE service_id = %s", [sid])
        else:  # only the bench's events (20M at scale 10): emptied at once
            cursor.execute("TRUNCATE metering_usageevent, metering_usageeventkey")
        cursor.execute("CREATE TEMP TABLE bench_links ON COMMIT DROP AS "
                       "SELECT id, customer_id FROM identity_accountlink WHERE service_id = %s", [sid])
        cursor.execute("DELETE FROM metering_subscription WHERE service_id = %s", [sid])
        cursor.execute("DELETE FROM identity_accountlink WHERE service_id = %s", [sid])
        cursor.execute("DELETE FROM identity_customer WHERE id IN (SELECT customer_id FROM bench_links)")
        cursor.execute(
            "DELETE FROM metering_chargetier t USING metering_charge c, metering_plan p "
            "WHERE t.charge_id = c.id AND c.plan_id = p.id AND p.service_id = %s", [sid])
        cursor.execute(
            "DELETE FROM metering_charge c USING metering_plan p WHERE c.plan_id = p.id AND p.service_id = %s",
            [sid])
        cursor.execute("DELETE FROM metering_plan WHERE service_id = %s", [sid])
        cursor.execute("DELETE FROM metering_billablemetric WHERE service_id = %s", [sid])
        cursor.execute("DELETE FROM identity_service WHERE id = %s", [sid])


# Every column of an account (COPY needs the NOT NULL ones: Django sets no database defaults).
LINK_COLUMNS = [f.column for f in AccountLink._meta.concrete_fields]


def link_row(values: dict) -> str:
    """One COPY row of identity_accountlink: the given values, "" for text columns, NULL for the rest."""
    cells = []
    for f in AccountLink._meta.concrete_fields:
        value = values.get(f.column, values.get(f.name))
        if value is None:
            value = "" if f.get_internal_type() == "CharField" and not f.null else "\\N"
        cells.append(str(value))
    return "\t".join(cells) + "\n"


def load(*, subscriptions: int, now: datetime, seed: int = 7) -> Service:
    rng = random.Random(seed)
    service = Service.objects.create(code=SERVICE_CODE, name="Rating benchmark")
    cpu = BillableMetric.objects.create(service=service, code="cpu_seconds", name="CPU seconds",
                                        aggregation_type="sum_agg", field_name="cpu_seconds")
    storage = BillableMetric.objects.create(service=service, code="storage_gb", name="Storage GB",
                                            aggregation_type="max_agg", field_name="gb")
    plan_ids = []
    for code, quota in PLANS:
        plan = Plan.objects.create(service=service, code=code, name=code, interval="monthly",
                                   amount="10", amount_currency="CAD")
        plan_ids.append(str(plan.id))
        for metric, model, props in (
            (cpu, "standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": quota}),
            (storage, "graduated", STORAGE_TIERS),
        ):
            fields, tiers = charge_columns(parse_charge_properties(charge_model=model, properties=props))
            charge = Charge.objects.create(plan=plan, metric=metric, **fields)
            ChargeTier.objects.bulk_create(ChargeTier(charge=charge, **t) for t in tiers)

    stamp = now.isoformat()
    customers, links, subs = [], [], []
    for n in range(subscriptions):
        customer_id, link_id, sub_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        start = now - timedelta(days=rng.randint(1, 27), seconds=rng.randint(0, 86399))
        _, end = windows.billing_window(interval="monthly", anchor=start, at=start)
        external_id = f"dep-{n:07d}"
        customers.append(f"{customer_id}\t\t\\N\t{stamp}\t{stamp}\n")
        links.append(link_row({"id": link_id, "external_id": f"acct-{n:07d}", "created_at": stamp, "updated_at": stamp,
                               "customer_id": customer_id, "service_id": service.id, "sequential_id": n + 1,
                               "name": f"Bench {n}", "currency": "CAD"}))
        subs.append(
            f"{sub_id}\t{external_id}\t\tactive\tlive\tanniversary\t{start.isoformat()}\t{start.isoformat()}"
            f"\t\\N\t\\N\t\\N\t{start.isoformat()}\t{start.isoformat()}\t{end.isoformat()}\t10\tCAD\t\\N"
            f"\t{stamp}\t{stamp}\t{link_id}\t{plan_ids[n % len(plan_ids)]}\t{service.id}\t\\N\t\n"
        )
    copy_rows("identity_customer", ["id", "email", "odoo_partner_id", "created_at", "updated_at"], customers)
    copy_rows("identity_accountlink", LINK_COLUMNS, links)
    copy_rows("metering_subscription", [
        "id", "external_id", "name", "status", "mode", "billing_time", "subscription_at", "started_at",
        "ending_at", "terminated_at", "canceled_at", "billing_anchor", "current_period_start",
        "current_period_end", "flat_amount", "currency", "odoo_sale_order_id", "created_at", "updated_at",
        "account_link_id", "plan_id", "service_id", "usage_frozen_until", "on_termination_credit_note"], subs)
    del customers, links, subs

    # The month before this one has its partition, as it would in production (created
    # ahead while it was the coming month); windows span it and the current month.
    ensure_event_partitions(now=now - timedelta(days=28), months_ahead=1)
    # The events are generated by PostgreSQL itself (generate_series), not streamed from
    # Python: 20M rows at scale 10. Periodic counter pushes: round r of every subscription,
    # then round r+1, ... so one subscription's events are spread over the whole table, as
    # in production. setseed() makes the values the same on every run.
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.7)")
        cursor.execute(
            "CREATE TEMP TABLE bench_subs AS "
            "SELECT id, external_id, current_period_start AS start, "
            "       (substring(external_id from 5))::bigint AS n "
            "FROM metering_subscription WHERE service_id = %s", [service.id])
        cursor.execute(_EVENTS_SQL, {"service": service.id, "rounds": EVENTS_PER_SUBSCRIPTION // 2,
                                     "subscriptions": subscriptions, "now": now, "stamp": now})
        cursor.execute("DROP TABLE bench_subs")
    return service


# Round r of subscription n: events 2(r·N + n) + 1 (cpu_seconds) and + 2 (storage_gb),
# stamped at start + (now - start)·(r + random)/rounds; cpu 0..400,000 CPU-seconds,
# storage 0..250 GB in steps of 0.001.
_EVENTS_SQL = """
INSERT INTO metering_usageevent (service_id, subscription_id, external_subscription_id, code, transaction_id,
                                 "timestamp", properties, value, precise_total_amount_cents, payload_hash, created_at)
SELECT %(service)s, s.id, s.external_id, m.code, 't' || m.tx, s.at, m.properties, m.value, NULL,
       lpad(to_hex(m.tx), 64, '0'), %(stamp)s
FROM generate_series(0, %(rounds)s - 1) AS r
CROSS JOIN LATERAL (
    SELECT b.id, b.external_id, b.n,
           b.start + (%(now)s::timestamptz - b.start) * ((r + random()) / %(rounds)s) AS at,
           floor(random() * 400001)::bigint AS cpu,
           (floor(random() * 250001) / 1000)::numeric(12, 3) AS gb
    FROM bench_subs b
) AS s
CROSS JOIN LATERAL (VALUES
    ('cpu_seconds', (r * %(subscriptions)s + s.n) * 2 + 1, jsonb_build_object('cpu_seconds', s.cpu::text), s.cpu::numeric),
    ('storage_gb', (r * %(subscriptions)s + s.n) * 2 + 2, jsonb_build_object('gb', s.gb::text), s.gb)
) AS m(code, tx, properties, value)
"""

GROUP_BY_SQL = ("SELECT subscription_id, code, count(*), sum(value), max(value) FROM metering_usageevent "
                "WHERE service_id = %s GROUP BY subscription_id, code")


def time_group_by(service_id: int, repeats: int = 3) -> tuple[float, int]:  # ok-float: seconds
    timings, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(GROUP_BY_SQL, [service_id])
            rows = len(cursor.fetchall())
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), rows


def group_by_parallel_workers(service_id: int) -> int:
    """How many parallel workers PostgreSQL gave the GROUP BY (it runs them beside its leader)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + GROUP_BY_SQL, [service_id])
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def launched(node: dict) -> int:
        return node.get("Workers Launched", 0) + sum(launched(child) for child in node.get("Plans", []))

    return launched(plan[0]["Plan"])


def clear_rated_usage(service: Service) -> None:
    RatedUsage.objects.filter(subscription__service=service).delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metering_ratedusage")


def rate_in_children(chunk_size: int, now: datetime, workers: int) -> dict:
    """Run rating in ``workers`` processes at once, each on one slice of the subscriptions."""
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--rate-only", "--chunk-size", str(chunk_size), "--now", now.isoformat(),
             "--shard", f"{index}/{workers}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        for index in range(workers)
    ]
    results = []
    for child in children:
        out, err = child.communicate()
        if child.returncode:
            raise RuntimeError(err)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    return {
        "seconds": max(r["seconds"] for r in results),
        "wall_seconds": wall,
        "max_rss_mb": max(r["max_rss_mb"] for r in results),
        **{key: sum(r[key] for r in results)
           for key in ("subscriptions", "rows_created", "rows_updated", "windows_closed", "chunks")},
    }


def peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over fork/exec
    from the parent, which holds the generated data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def rate_only(chunk_size: int, now: datetime, shard: str) -> None:
    import logging

    logging.disable(logging.INFO)
    index, count = (int(part) for part in shard.split("/"))
    started = time.perf_counter()
    summary = rating.rate_open_windows(service_code=SERVICE_CODE, chunk_size=chunk_size, now=now,
                                       shard=None if count == 1 else (index, count))
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds, "subscriptions": summary.subscriptions, "rows_created": summary.rows_created,
        "rows_updated": summary.rows_updated, "windows_closed": summary.windows_closed,
        "chunks": summary.chunks, "max_rss_mb": peak_rss_mb(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0],  # ok-float: a size factor
                        help="1.0 = 100k subscriptions, 2M events; several values run one after the other "
                             "and the cost per event is compared (e.g. --scale 0.1 1)")
    parser.add_argument("--chunk-size", type=int, default=rating.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--keep", action="store_true", help="keep the bench data afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse bench data kept by a previous --keep run (same scale)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="rating processes at once, each on a slice of the subscription ids "
                             "(as RATING_SHARDS does with Celery workers); several values are run "
                             "one after the other on the same data (default: 1 2)")
    parser.add_argument("--rate-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard", default="0/1", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate_only:
        rate_only(args.chunk_size, datetime.fromisoformat(args.now), args.shard)
        return

    ensure_migrated_database()
    summaries = [run_scale(args, scale, last=index == len(args.scale) - 1) for index, scale in enumerate(args.scale)]
    if len(summaries) > 1:
        log("cost per event across scales (same run; the machine is shared, so compare within the run):")
        for summary in summaries:
            log(f"  scale {summary['scale']:g}: {summary['events']:,} events: GROUP BY floor "
                f"{summary['group_by_us']:.2f} us/event; rating " + ", ".join(
                    f"{workers} process(es) {us:.2f} us/event ({us / summary['group_by_us']:.1f}x the floor)"
                    for workers, us in summary['rating_us']))


def run_scale(args: argparse.Namespace, scale: float, *, last: bool) -> dict:  # ok-float: a size factor
    subscriptions = max(1, int(FULL_SUBSCRIPTIONS * scale))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    log(f"rating bench, scale {scale:g}: {subscriptions:,} subscriptions x 2 charges, "
        f"{subscriptions * EVENTS_PER_SUBSCRIPTION:,} events, chunk {args.chunk_size}, "
        f"rating with {' then '.join(map(str, args.workers))} process(es) "
        f"(cores: {os.cpu_count()}; machine shared with other engineers)")
    service = Service.objects.filter(code=SERVICE_CODE).first() if args.reuse else None
    if service is None:
        delete_bench_data()
        started = time.perf_counter()
        service = load(subscriptions=subscriptions, now=now)
        load_seconds = time.perf_counter() - started
        log(f"loaded with COPY in {load_seconds:.1f}s")
    else:
        RatedUsage.objects.filter(subscription__service=service).delete()
        subscriptions = service.subscriptions.count()
        log(f"reusing {subscriptions:,} kept subscriptions")
    events = subscriptions * EVENTS_PER_SUBSCRIPTION
    with connection.cursor() as cursor:
        # Fresh statistics for the loaded tables (autovacuum would get there too).
        for table in ("metering_usageevent", "metering_subscription", "metering_ratedusage"):
            cursor.execute(f"VACUUM ANALYZE {table}")

    group_by_seconds, groups = time_group_by(service.id)
    parallel = group_by_parallel_workers(service.id)
    log(f"single SQL GROUP BY over the events: {group_by_seconds:.2f}s median of 3 ({groups:,} groups; "
        f"PostgreSQL ran it on {parallel} parallel worker(s) beside its leader)")

    ratios = []
    for round_index, workers in enumerate(args.workers):
        if round_index:
            clear_rated_usage(service)
        first = rate_in_children(args.chunk_size, now, workers)
        log(f"[{workers} rating process(es)] rate_open_windows, first run: {first['seconds']:.2f}s "
            f"(wall incl. process start {first['wall_seconds']:.2f}s), {first['subscriptions']:,} subscriptions, "
            f"{first['rows_created']:,} RatedUsage rows created, {first['chunks']} chunks, "
            f"peak RSS {first['max_rss_mb']:.0f} MB")
        again = rate_in_children(args.chunk_size, now, workers)
        log(f"[{workers} rating process(es)] re-run, nothing changed: {again['seconds']:.2f}s, "
            f"{again['rows_created']} created, {again['rows_updated']} updated, "
            f"peak RSS {again['max_rss_mb']:.0f} MB")
        stored = RatedUsage.objects.filter(subscription__service=service).count()
        log(f"[{workers} rating process(es)] RatedUsage rows stored: {stored:,}")
        ratios.append((workers, first["seconds"] / group_by_seconds, again["seconds"] / group_by_seconds,
                       first["seconds"]))
    for workers, first_ratio, again_ratio, seconds in ratios:
        log(f"ratio rating / GROUP BY with {workers} rating process(es): first run {first_ratio:.1f}x, "
            f"re-run {again_ratio:.1f}x (goal <= 3x); cost per event {seconds / events * 1e6:.2f} us "
            f"(GROUP BY {group_by_seconds / events * 1e6:.2f} us); budget 60s at full scale: "
            f"{'OK' if seconds <= 60 else 'OVER'}")
    if not (args.keep and last):
        delete_bench_data()
    return {"scale": scale, "events": events, "group_by_us": group_by_seconds / events * 1e6,
            "rating_us": [(workers, seconds / events * 1e6) for workers, _, _, seconds in ratios]}


if __name__ == "__main__":
    main()
