"""Benchmark: push N live subscriptions with their usage lines into the fake Odoo over HTTP.

    DATABASE_URL=postgres://.../fb_odoo DJANGO_DEBUG=1 python bench/odoo_sync.py --scale 10000
    ... nice -n 19 ionice -c3 python bench/odoo_sync.py --scale 100000 --pushed 5000

Prints RPC round trips per 100 records written to Odoo (goal <= 3; batching
search_read, multi-record create and ``load``) and records/s, for: the initial push; a
cycle with nothing changed (change-driven: goal <= 2 s, 0 RPCs, whatever the number of
subscriptions; run ``--repeat`` times, median printed); the same as a full sweep (the old
walk over every subscription: the O(n) baseline); a cycle where every pushed usage line
changed (re-rated: one write per line before, goal <= 3 RPCs per 100 lines); a cycle where
the next window of one charge closed (one new line per pushed subscription). Cycles run
without a time budget (the whole change log). Uses its own service code (``bench-odoo``) in
the database given, deleting its previous data.

At large scale the initial push of every subscription through the fake Odoo would be most
of the run (and measures the fake): ``--pushed P`` (default: all up to 10,000) pushes P of
them for real in the measured initial push; the others are then seeded as pushed by an
earlier cycle, in bulk (their sync state rows cloned from the measured push's, their Odoo
ids written back; the fake does not hold them). The measured cycles run the real bridge
code against the fake over HTTP on the whole database: the unchanged cycles on all N, the
changed ones on the P pushed subscriptions' changes. The full sweep then examines a sample
of the pushed ones (``--full-sweep sample``, ``--sweep-sample``) and prints the
extrapolation to N, or is skipped (``--full-sweep skip``); the output says which.

Runs against an older checkout too (no change log there: every cycle is the full walk;
only with every subscription pushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

import django  # noqa: E402

django.setup()

import datetime as dt  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
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
from odoo_bridge.client import OdooClient, OdooSettings, reset_client  # noqa: E402
from odoo_bridge.models import OdooConnectionState, OdooSyncState  # noqa: E402
import inspect  # noqa: E402

from odoo_bridge.models import SyncKind  # noqa: E402
from odoo_bridge.sync import push_cycle, resync  # noqa: E402
from odoo_bridge.testing import FakeOdoo  # noqa: E402

UTC = dt.timezone.utc
START, END = dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC)
CODE = "bench-odoo"


def reset() -> None:
    """Delete the previous run's data (raw deletes: at 100,000 subscriptions the ORM's cascade collector
    alone took minutes). The bench owns its database: every sync state row and change log row goes."""
    service = Service.objects.filter(code=CODE).first()
    with transaction.atomic():
        OdooSyncState.objects.all()._raw_delete(using="default")
        OdooConnectionState.objects.all().delete()
        if CHANGE_DRIVEN:
            from odoo_bridge.models import OdooPushChange
            OdooPushChange.objects.all()._raw_delete(using="default")
        if service is None:
            return
        subs = Subscription.objects.filter(service=service)
        RatedUsage.objects.filter(subscription__in=subs)._raw_delete(using="default")
        customers = AccountLink.objects.filter(service=service).values("customer_id")
        service.invoices.all().delete()
        subs._raw_delete(using="default")
        sql, params = customers.query.sql_with_params()
        with connection.cursor() as cursor:  # the customers first, while their links still name them
            cursor.execute(f"DELETE FROM {Customer._meta.db_table} WHERE id IN ({sql})", params)
        AccountLink.objects.filter(service=service)._raw_delete(using="default")
        Charge.objects.filter(plan__service=service).delete()
        Plan.objects.filter(service=service).delete()
        BillableMetric.objects.filter(service=service).delete()


@transaction.atomic
def seed(scale: int) -> tuple[list[Charge], list[Subscription]]:
    """The bench's subscriptions, bulk-inserted (2 frozen usage lines each); nothing is in Odoo yet."""
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
    size = 5000
    customers = Customer.objects.bulk_create([Customer(email=f"bench{i}@example.test") for i in range(scale)],
                                             batch_size=size)
    links = AccountLink.objects.bulk_create([AccountLink(service=service, external_id=f"acct-{i}", customer=c,
                                                         name=f"Bench {i}", country="CA", state="ON",
                                                         sequential_id=i + 1)
                                             for i, c in enumerate(customers)], batch_size=size)
    subs = Subscription.objects.bulk_create([Subscription(
        service=service, account_link=link, external_id=f"sub-{i}", plan=plan, started_at=START, subscription_at=START,
        billing_anchor=START, current_period_start=START, current_period_end=END, flat_amount=Decimal("49"),
        currency="CAD") for i, link in enumerate(links)], batch_size=size)
    RatedUsage.objects.bulk_create([RatedUsage(subscription=s, charge=ch, window_start=START, window_end=END,
                                               units=Decimal(100 + i), billable_units=Decimal(100 + i),
                                               amount=Decimal(100 + i) * ch.amount, state="frozen")
                                    for i, s in enumerate(subs) for ch in charges], batch_size=size)
    return charges, subs


# Odoo ids of the subscriptions seeded as already pushed, per kind: far above what the fake hands out
SEEDED_ID_BASE = {SyncKind.CUSTOMER: 100_000_000, SyncKind.ACCOUNT: 200_000_000, SyncKind.SUBSCRIPTION: 300_000_000,
                  SyncKind.USAGE: 400_000_000}


@transaction.atomic
def seed_pushed(background: list[Any], pushed: list[Any], charges: list[Charge]) -> int:
    """Make ``background`` subscriptions look pushed in an earlier cycle, in bulk (INSERT ... SELECT): one
    sync state row per customer, account, order and usage line, cloned from a row of the same kind that the
    measured push wrote (its status, final flag and hash; its own object id, reference and Odoo id), and the
    Odoo ids written back on our rows as the push does. The fake Odoo does not hold these records: no
    measured cycle sends them (the change log has none of them, the full sweep is sampled)."""
    state = OdooSyncState._meta.db_table
    with connection.cursor() as cursor:
        background_table(cursor, background)
    sub_t, link_t, usage_t = Subscription._meta.db_table, AccountLink._meta.db_table, RatedUsage._meta.db_table
    measured = OdooSyncState.objects.filter(status="synced").order_by("pk")
    # kind, the objects' ids, the row of the measured push cloned (usage lines: one of the same charge each)
    steps: list[tuple[str, str, Any]] = [
        (SyncKind.CUSTOMER, f"SELECT l.customer_id AS id FROM {sub_t} s JOIN {link_t} l ON l.id = s.account_link_id "
                            "JOIN bench_background b ON b.id = s.id", measured.filter(kind=SyncKind.CUSTOMER)),
        (SyncKind.ACCOUNT, f"SELECT s.account_link_id AS id FROM {sub_t} s JOIN bench_background b ON b.id = s.id",
         measured.filter(kind=SyncKind.ACCOUNT)),
        (SyncKind.SUBSCRIPTION, f"SELECT s.id FROM {sub_t} s JOIN bench_background b ON b.id = s.id",
         measured.filter(kind=SyncKind.SUBSCRIPTION)),
    ] + [(SyncKind.USAGE, f"SELECT u.id FROM {usage_t} u JOIN bench_background b ON b.id = u.subscription_id "
                          f"WHERE u.charge_id = '{charge.pk}'",
          measured.filter(kind=SyncKind.USAGE, object_id__in=[str(pk) for pk in RatedUsage.objects.filter(
              charge=charge, subscription_id__in=pushed[:10]).values_list("pk", flat=True)])) for charge in charges]
    written_back = [(SyncKind.CUSTOMER, Customer._meta.db_table, "odoo_partner_id"),
                    (SyncKind.ACCOUNT, link_t, "odoo_invoice_partner_id"),
                    (SyncKind.SUBSCRIPTION, sub_t, "odoo_sale_order_id"), (SyncKind.USAGE, usage_t, "odoo_line_id")]
    written = 0
    with connection.cursor() as cursor:
        for kind, objects, templates in steps:
            template = templates.values_list("pk", flat=True).first()
            if template is None:
                raise SystemExit(f"no {kind} row of the measured push to clone")
            cursor.execute(
                f"INSERT INTO {state} (kind, object_id, odoo_id, created_at, updated_at, service_id, reference, label, "
                "status, odoo_model, pushed_hash, attempts, last_attempt_at, synced_at, last_error, last_error_name, "
                "pre_rated, pricing_note, frozen, final) "
                "SELECT t.kind, o.id::text, %(base)s + row_number() OVER (ORDER BY o.id), now(), now(), t.service_id, "
                "replace(t.reference, t.object_id, o.id::text), t.label, t.status, t.odoo_model, t.pushed_hash, 0, "
                "t.last_attempt_at, t.synced_at, '', '', t.pre_rated, t.pricing_note, t.frozen, t.final "
                f"FROM ({objects}) o, {state} t WHERE t.id = %(template)s",
                {"template": template, "base": SEEDED_ID_BASE[kind] + written})
            if not cursor.rowcount:
                raise SystemExit(f"no {kind} row of the measured push to clone")
            written += cursor.rowcount
        for kind, table, column in written_back:
            cursor.execute(f"UPDATE {table} x SET {column} = st.odoo_id FROM {state} st WHERE st.kind = %(kind)s "
                           f"AND st.object_id = x.id::text AND st.odoo_id >= %(base)s",
                           {"kind": kind, "base": SEEDED_ID_BASE[kind]})
        forget_changes(cursor)  # the write-backs' own: what was pushed earlier has nothing left to do
    return written


def background_table(cursor: Any, background: list[Any]) -> None:
    """The seeded subscriptions in a temporary table: joined, not ``= ANY(array)`` (which compares every row
    with every element: quadratic at 100,000)."""
    cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS bench_background (id uuid PRIMARY KEY)")
    cursor.execute("TRUNCATE bench_background")
    cursor.execute("INSERT INTO bench_background SELECT unnest(%s::uuid[])", [background])
    cursor.execute("ANALYZE bench_background")


def analyze() -> float:  # ok-float: seconds
    """Fresh planner statistics and no dead rows after a bulk load or delete, as autovacuum keeps a live
    database. Without them (autovacuum is off on the shared machine's PostgreSQL) the push's per-batch usage
    query hash-joined every final usage row's sync state: 0.45 s a batch at 100,000 subscriptions, 5 ms with
    them; and the previous run's 100,000 deleted rows stayed in the tables."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def forget_changes(cursor: Any) -> None:
    """Delete the change log rows of the seeded subscriptions (``bench_background``)."""
    if CHANGE_DRIVEN:
        from odoo_bridge.models import OdooPushChange
        cursor.execute(f"DELETE FROM {OdooPushChange._meta.db_table} c USING bench_background b "
                       "WHERE c.subscription_id = b.id")


CHANGE_DRIVEN = "full" in inspect.signature(push_cycle).parameters

# Wall time spent waiting for RPC answers: the fake Odoo runs in this process (a thread, same GIL) and its
# searches scan its records, so a cycle's seconds = the bridge's own + these.
RPC_SECONDS = [0.0]  # ok-float: seconds
_untimed_call = OdooClient.call


def _timed_call(self: OdooClient, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        return _untimed_call(self, *args, **kwargs)
    finally:
        RPC_SECONDS[0] += time.perf_counter() - started


OdooClient.call = _timed_call  # type: ignore[method-assign]


def run(label: str, fake: FakeOdoo, settings_: OdooSettings, batch_size: int, *, full: bool = False,
        lines_changed: int = 0) -> dict:
    fake.reset_counters()
    RPC_SECONDS[0] = 0.0
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
          f"records/s={written / seconds if seconds else 0:8.0f} seconds={seconds:7.2f} "
          f"(waiting for RPCs {RPC_SECONDS[0]:7.2f})"
          + (f" ABORTED {report.aborted}" if report.aborted else ""))
    return {"trips": trips, "written": written, "seconds": seconds, "rpc_seconds": RPC_SECONDS[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10000, help="live subscriptions (2 usage lines each)")
    parser.add_argument("--pushed", type=int, default=None,
                        help="subscriptions the measured cycles push to the fake Odoo over HTTP (default: all up to "
                             "10,000); the others are seeded as pushed in an earlier cycle (sync state rows in bulk)")
    parser.add_argument("--full-sweep", choices=["all", "sample", "skip"], default=None,
                        help="the O(n) baseline: all subscriptions (default when all are pushed), a sample of the "
                             "pushed ones (default otherwise: the seeded ones are not in the fake Odoo), or none")
    parser.add_argument("--sweep-sample", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the unchanged cycle (median printed)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--odoo-version", default="17.0")
    args = parser.parse_args()
    pushed = min(args.scale, args.pushed if args.pushed is not None else 10000)
    sweep = args.full_sweep or ("all" if pushed == args.scale else "sample")
    if pushed < args.scale and not CHANGE_DRIVEN:
        raise SystemExit("--pushed below --scale needs the change log (this checkout has none)")
    if sweep == "all" and pushed < args.scale:
        raise SystemExit("--full-sweep all needs every subscription pushed (--pushed = --scale)")
    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # ok-float: load
    if connection.vendor == "postgresql":
        from bench._database import ensure_database

        ensure_database(os.environ["DATABASE_URL"])  # a new database name works as the other benches' do
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    reset()
    print(f"previous data deleted in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    charges, subs = seed(args.scale)
    sample, background = [s.pk for s in subs[:pushed]], [s.pk for s in subs[pushed:]]
    if background:
        with connection.cursor() as cursor:  # the seeded ones are not pushed by the measured cycles
            background_table(cursor, background)
            forget_changes(cursor)
    seconds = time.perf_counter() - started
    print(f"seeded {args.scale} subscriptions x 2 usage lines in {seconds:.1f}s (VACUUM ANALYZE after it: {analyze():.1f}s); "
          f"{pushed} pushed by the measured cycles; batch size {args.batch_size}; fake Odoo {args.odoo_version} "
          "over HTTP on 127.0.0.1")
    with FakeOdoo(version=args.odoo_version) as fake:
        reset_client()
        settings_ = OdooSettings(url=fake.url, db=fake.db, user=fake.login, api_key=fake.api_key,
                                 timeout_seconds=120)
        first = run(f"initial push ({pushed} subscriptions)", fake, settings_, args.batch_size,
                    full=not background)
        if background:
            started = time.perf_counter()
            rows = seed_pushed(background, sample, charges)
            print(f"seeded as pushed earlier: {len(background)} subscriptions, {rows} sync state rows with their "
                  f"Odoo ids written back, in {time.perf_counter() - started:.1f}s (bulk; not in the fake Odoo)")
        print(f"VACUUM ANALYZE after the initial state: {analyze():.1f}s")
        unchanged = [run("nothing changed", fake, settings_, args.batch_size) for _ in range(args.repeat)]
        print(f"nothing changed at {args.scale} subscriptions: median "
              f"{statistics.median(r['seconds'] for r in unchanged):.3f}s, "
              f"max {max(r['seconds'] for r in unchanged):.3f}s over {args.repeat} cycles, "
              f"{sum(r['trips'] for r in unchanged)} round trips")
        if sweep == "all":
            run("nothing changed, full sweep (old walk)", fake, settings_, args.batch_size, full=True)
        elif sweep == "sample":
            from odoo_bridge import changes
            size = min(args.sweep_sample, pushed)
            changes.enqueue(sample[:size], reason="full sweep")
            walk = run(f"old walk over a sample of {size}", fake, settings_, args.batch_size)
            per_sub = walk["seconds"] / size if size else 0.0  # ok-float: seconds
            print(f"full sweep NOT run over all {args.scale}: sampled {size} subscriptions "
                  f"({per_sub * 1000:.2f} ms each) -> about {per_sub * args.scale:.0f}s for all (estimate)")
        else:
            print(f"full sweep skipped (--full-sweep skip): the old walk over {args.scale} subscriptions not measured")
        # every pushed usage line changes before invoicing (re-rated, and its rows resynced, as ops do after a
        # correction): the cycle finds each line in Odoo and rewrites it; one write per line before
        frozen = RatedUsage.objects.filter(subscription__service__code=CODE, subscription_id__in=sample)
        changed = 0
        for charge in charges:
            changed += frozen.filter(charge=charge).update(units=F("units") + 1, billable_units=F("billable_units") + 1,
                                                           amount=F("amount") + charge.amount)
        resync(OdooSyncState.objects.filter(kind=SyncKind.USAGE,
                                            object_id__in=[str(pk) for pk in frozen.values_list("pk", flat=True)]))
        run(f"every usage line changed ({changed})", fake, settings_, args.batch_size, lines_changed=changed)
        # the next window of one charge closes: one new line per pushed subscription (only closed windows go)
        following = dt.datetime(2027, 1, 1, tzinfo=UTC)
        RatedUsage.objects.bulk_create([RatedUsage(
            subscription=u.subscription, charge=u.charge, window_start=END, window_end=following, units=u.units,
            billable_units=u.billable_units, amount=u.amount, state="frozen")
            for u in frozen.filter(charge=charges[0]).select_related("subscription", "charge")], batch_size=5000)
        run("next window of one charge closed", fake, settings_, args.batch_size)
        last = [run("nothing changed", fake, settings_, args.batch_size) for _ in range(args.repeat)]
        print(f"nothing changed at the end: median {statistics.median(r['seconds'] for r in last):.3f}s")
        orders = len(fake.store.records["sale.order"])
        lines = len(fake.store.records["sale.order.line"])
        print(f"the fake Odoo holds {orders} orders, {lines} order lines, "
              f"{len(fake.store.records['res.partner'])} partners; the initial push wrote "
              f"{first['written'] / max(first['trips'], 1):.0f} records per call")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # ok-float: load
    reset_client()


if __name__ == "__main__":
    main()
