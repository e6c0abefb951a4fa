"""Benchmark of the NexaCloud import (and of a re-run and a reconciliation).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_migration \
        .venv/bin/python bench/import.py [--scale 0.1] [--keep-source]

Full scale (``--scale 1``): 10,000 users, 20,000 deployments, 1,000,000 hourly
usage rows. The source is a fresh PostgreSQL database ``nc_src_bench`` filled by
COPY in a child process (so its memory does not count); the target is the
Django database of DATABASE_URL, whose Fusion tables are emptied first (never
point this at a database you care about). Prints wall time and the peak RSS of
this process (goal: under 5 minutes and 300 MB).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

SOURCE_DB = "nc_src_bench"


def _generate(admin_dsn: str, users: int, deployments: int, usage_rows: int, queue) -> None:
    from migration.testing.source_db import create_source_database, generate_source_data

    dsn = create_source_database(SOURCE_DB, admin_dsn)
    sizes = generate_source_data(dsn, users=users, deployments=deployments, usage_rows=usage_rows)
    queue.put((dsn, sizes))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ok-float: kB -> MB, not money


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,  # ok-float: a size factor
                        help="fraction of 10k users / 20k deployments / 1M usage rows")
    parser.add_argument("--keep-source", action="store_true", help="do not drop nc_src_bench afterwards")
    args = parser.parse_args()
    users = max(1, int(10_000 * args.scale))
    deployments = max(1, int(20_000 * args.scale))
    usage_rows = max(1, int(1_000_000 * args.scale))

    from migration.testing.source_db import admin_dsn_from_database_url, drop_source_database

    admin_dsn = admin_dsn_from_database_url()
    t0 = time.perf_counter()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_generate, args=(admin_dsn, users, deployments, usage_rows, queue))
    child.start()
    dsn, sizes = queue.get()
    child.join()
    print(f"source generated in {time.perf_counter() - t0:.1f}s: {sizes} (COPY, child process)")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from identity.models import Service
    from migration.reconciliation import reconcile_service
    from migration.services import import_nexacloud

    call_command("migrate", verbosity=0)
    _truncate_fusion_tables(connection)
    Service.objects.get_or_create(code="nexacloud", defaults={"name": "NexaCloud"})
    print(f"machine: {os.cpu_count()} cores, shared with four other engineers' suites and benchmarks")
    print(f"peak RSS before import: {peak_rss_mb():.0f} MB")

    try:
        for label in ("first import", "re-run (idempotent)"):
            start = time.perf_counter()
            run = import_nexacloud(dsn=dsn, started_by="bench")
            elapsed = time.perf_counter() - start
            print(f"{label}: {elapsed:.1f}s, status {run.status}, peak RSS {peak_rss_mb():.0f} MB")
            for entity, counts in run.counts.items():
                print(f"    {entity:<12} {counts}")
        start = time.perf_counter()
        result = reconcile_service(service_code="nexacloud", dsn=dsn)
        print(f"reconciliation: {time.perf_counter() - start:.1f}s, {result.as_dict()}, "
              f"peak RSS {peak_rss_mb():.0f} MB")
    finally:
        if not args.keep_source:
            drop_source_database(SOURCE_DB, admin_dsn)


def _truncate_fusion_tables(connection) -> None:
    from django.apps import apps

    tables = [m._meta.db_table for app in ("migration", "odoo_bridge", "metering") for m in apps.get_app_config(app).get_models()]
    tables += ["identity_accountlink", "identity_customer"]
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(t for t in tables if t in existing) + " CASCADE")


if __name__ == "__main__":
    main()
