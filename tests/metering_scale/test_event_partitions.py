"""The monthly partitions of the usage-event table: events land in their month, beat
creates months ahead, and the retention policy archives closed months to compressed files
(keeping rated results), through the beat tasks on a real worker and the command."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from metering.models import RatedUsage, UsageEvent, UsageEventKey
from metering.services import partitions
from tests.rating.conftest import Catalogue

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "1"})
SEATS = ("seats", "sum_agg", "standard", {"amount": "1"})


def partition_holding(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM metering_usageevent WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def store(sub, code: str, timestamp: datetime, value: int, n: int) -> UsageEvent:
    """An event and its key, as ingest stores them (ORM: these months are closed to the API)."""
    event = UsageEvent.objects.create(
        service=sub.service, subscription=sub, external_subscription_id=sub.external_id, code=code,
        transaction_id=f"tx-{n}", timestamp=timestamp, properties={"value": value}, value=Decimal(value),
        payload_hash=hashlib.sha256(str(n).encode()).hexdigest())
    UsageEventKey.objects.create(service=sub.service, transaction_id=event.transaction_id,
                                 external_subscription_id=sub.external_id, event_id=event.pk,
                                 timestamp=timestamp, payload_hash=event.payload_hash)
    return event


@pytest.mark.django_db
def test_events_land_in_the_partition_of_their_month_and_months_ahead_are_created(service):
    assert partitions.is_partitioned()
    now = timezone.now()
    this_month = partitions.month_start(now)
    names = {p.name for p in partitions.event_partitions()}
    assert {partitions.partition_of(partitions.add_months(this_month, k)).name for k in range(4)} <= names

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan, start=this_month - timedelta(days=400), end=this_month + timedelta(days=400))
    current = store(sub, "cpu_seconds", now, 1, 1)
    assert partition_holding(current.pk) == partitions.partition_of(this_month).name
    # A month nobody created yet: the DEFAULT partition takes it ...
    far = partitions.add_months(this_month, 9) + timedelta(days=3)
    stray = store(sub, "cpu_seconds", far, 2, 2)
    assert partition_holding(stray.pk) == partitions.DEFAULT_PARTITION
    # ... and creating that month moves its rows out of DEFAULT, ids and keys kept.
    created = partitions.ensure_event_partitions(months_ahead=9)
    assert partitions.partition_of(partitions.month_start(far)).name in created
    assert partition_holding(stray.pk) == partitions.partition_of(partitions.month_start(far)).name
    assert UsageEvent.objects.get(pk=stray.pk).value == 2
    assert partitions.ensure_event_partitions(months_ahead=9) == []  # idempotent


def test_beat_creates_the_months_ahead_on_a_real_worker(service, start_celery_worker):
    ahead = partitions.partition_of(partitions.add_months(partitions.month_start(timezone.now()), 3))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {ahead.name}")
    assert ahead.name not in {p.name for p in partitions.event_partitions()}
    from metering import tasks

    start_celery_worker(queues="rating", env={"DJANGO_DEBUG": "1"})
    tasks.ensure_event_partitions.delay()
    deadline = time.monotonic() + 60
    while ahead.name not in {p.name for p in partitions.event_partitions()} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ahead.name in {p.name for p in partitions.event_partitions()}


def test_retention_archives_closed_months_to_files_and_keeps_rated_results(service, start_celery_worker, tmp_path):
    now = timezone.now()
    this_month = partitions.month_start(now)
    old = partitions.add_months(this_month, -14)  # closed, past the 12-month retention
    held_open = partitions.add_months(this_month, -13)  # past retention, but a window is still open there
    recent = partitions.add_months(this_month, -2)  # closed but younger than the retention age
    for month in (old, held_open, recent):
        partitions.ensure_event_partitions(now=month, months_ahead=0)

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    closed = catalogue.subscription(plan, start=old, end=partitions.add_months(old, 1),
                                    usage_frozen_until=this_month)
    lagging = catalogue.subscription(plan, start=held_open, end=partitions.add_months(held_open, 1))
    archived = [store(closed, "cpu_seconds", old + timedelta(days=d, hours=d), 10 + d, d) for d in range(5)]
    store(lagging, "cpu_seconds", held_open + timedelta(days=1), 7, 100)
    kept_recent = store(closed, "cpu_seconds", recent + timedelta(days=1), 8, 101)
    charge = plan.charges.get()
    RatedUsage.objects.create(subscription=closed, charge=charge, window_start=old,
                              window_end=partitions.add_months(old, 1), units=Decimal(60), amount=Decimal(60),
                              state="frozen")
    # A recurring metric's month is kept: its totals carry into every later window.
    recurring_month = partitions.add_months(this_month, -15)
    partitions.ensure_event_partitions(now=recurring_month, months_ahead=0)
    seats_plan = catalogue.plan("seats", [SEATS])
    seats_plan.charges.get().metric.__class__.objects.filter(code="seats").update(recurring=True)
    seats = catalogue.subscription(seats_plan, start=recurring_month, end=partitions.add_months(recurring_month, 1),
                                   usage_frozen_until=this_month)
    store(seats, "seats", recurring_month + timedelta(days=2), 3, 200)

    start_celery_worker(queues="rating", env={"DJANGO_DEBUG": "1", "EVENTS_RETENTION_MONTHS": "12",
                                              "EVENTS_ARCHIVE_DIR": str(tmp_path)})
    from metering import tasks

    tasks.archive_event_partitions.delay()
    old_partition = partitions.partition_of(old)
    archive = tmp_path / f"{old_partition.name}.csv.gz"
    deadline = time.monotonic() + 60
    while old_partition.name in {p.name for p in partitions.event_partitions()} and time.monotonic() < deadline:
        time.sleep(0.2)
    names = {p.name for p in partitions.event_partitions()}
    assert old_partition.name not in names
    assert {partitions.partition_of(held_open).name, partitions.partition_of(recent).name,
            partitions.partition_of(recurring_month).name} <= names

    # The archive holds exactly the month's events, and the manifest describes it.
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(archive.read_bytes()).decode())))
    assert [(int(r["id"]), r["transaction_id"], Decimal(r["value"])) for r in rows] == [
        (e.pk, e.transaction_id, Decimal(e.value)) for e in archived]
    manifest = json.loads((tmp_path / f"{old_partition.name}.json").read_text())
    assert manifest["rows"] == 5 and manifest["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert not (tmp_path / f"{old_partition.name}.csv.gz.partial").exists()

    # Gone from the database with their keys; everything else stays, rated results too.
    assert not UsageEvent.objects.filter(pk__in=[e.pk for e in archived]).exists()
    assert not UsageEventKey.objects.filter(event_id__in=[e.pk for e in archived]).exists()
    assert UsageEvent.objects.filter(pk=kept_recent.pk).exists()
    assert UsageEvent.objects.count() == 3 and UsageEventKey.objects.count() == 3
    assert RatedUsage.objects.get(subscription=closed).amount == Decimal(60)

    # The command applies the same policy and says why a due month is kept.
    out = io.StringIO()
    call_command("event_partitions", "--archive", "--older-than-months", "12", "--directory", str(tmp_path),
                 stdout=out)
    assert f"kept {partitions.partition_of(held_open).name}: events in a window that is not closed yet" in out.getvalue()
    assert f"kept {partitions.partition_of(recurring_month).name}: events of a recurring metric" in out.getvalue()


def test_the_beat_schedule_runs_partition_upkeep():
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"metering.tasks.ensure_event_partitions", "metering.tasks.archive_event_partitions"} <= tasks
    assert datetime(2027, 1, 1, tzinfo=dt_timezone.utc) == partitions.add_months(
        datetime(2026, 11, 1, tzinfo=dt_timezone.utc), 2)
