"""The monthly partitions of the usage-event table (PostgreSQL) and their retention.

``metering_usageevent`` is partitioned by RANGE of ``timestamp``, one partition per
calendar month (UTC) named ``metering_usageevent_pYYYY_MM``, plus a DEFAULT partition
that catches any timestamp no monthly partition covers (migration 0009 creates them).

* ``ensure_event_partitions`` (beat, daily) creates the partitions of the current month
  and the next ``EVENTS_PARTITIONS_AHEAD_MONTHS`` before any event needs them; rows the
  DEFAULT partition holds for such a month are moved into it.
* ``archive_event_partitions`` (beat, daily) applies the retention policy: a month that
  ended more than ``EVENTS_RETENTION_MONTHS`` ago, all of whose events lie in closed
  (frozen) windows, is written to ``EVENTS_ARCHIVE_DIR`` as a gzip-compressed CSV with a
  JSON manifest (row count, SHA-256), its keys are released, and it is detached and
  dropped. Rated results (``RatedUsage``) stay. A month holding events of a ``recurring``
  metric is kept: rating carries their totals into every later window.

The embedded SQLite default keeps its plain table: both are no-ops there.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone as dj_timezone

from metering.models import BillableMetric, Subscription, UsageEvent, UsageEventKey
from metering.window_sql import closed_before_sql

EVENTS = UsageEvent._meta.db_table
DEFAULT_PARTITION = f"{EVENTS}_default"
_PREFIX = f"{EVENTS}_p"


@dataclass(frozen=True, slots=True)
class EventPartition:
    name: str
    start: datetime  # [start, end): one calendar month, UTC
    end: datetime


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def partition_of(month: datetime) -> EventPartition:
    return EventPartition(f"{_PREFIX}{month:%Y_%m}", month, add_months(month, 1))


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [EVENTS])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def event_partitions() -> list[EventPartition]:
    """The monthly partitions attached to the events table, oldest first."""
    if not is_partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                       " WHERE i.inhparent = to_regclass(%s) AND c.relname LIKE %s", [EVENTS, f"{_PREFIX}%"])
        names = sorted(name for (name,) in cursor.fetchall())
    result = []
    for name in names:
        year, month = name[len(_PREFIX):].split("_")
        result.append(partition_of(datetime(int(year), int(month), 1, tzinfo=timezone.utc)))
    return result


def ensure_event_partitions(*, now: datetime | None = None, months_ahead: int | None = None) -> list[str]:
    """Create the partitions of the current month and the next ``months_ahead``; returns
    the names created."""
    if not is_partitioned():
        return []
    ahead = settings.EVENTS_PARTITIONS_AHEAD_MONTHS if months_ahead is None else months_ahead
    existing = {p.name for p in event_partitions()}
    first = month_start(now or dj_timezone.now())
    created = []
    for offset in range(ahead + 1):
        partition = partition_of(add_months(first, offset))
        if partition.name not in existing:
            _create_partition(partition)
            created.append(partition.name)
    return created


def _create_partition(partition: EventPartition) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        # Inserts into DEFAULT wait while its rows of this month move (and the new
        # partition's bounds are checked against it); a month created ahead moves none.
        cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN EXCLUSIVE MODE")
        cursor.execute(f'SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE "timestamp" >= %s'
                       ' AND "timestamp" < %s)', [partition.start, partition.end])
        if not cursor.fetchone()[0]:
            cursor.execute(f"CREATE TABLE {partition.name} PARTITION OF {EVENTS} FOR VALUES FROM (%s) TO (%s)",
                           [partition.start, partition.end])
            return
        cursor.execute(f"CREATE TABLE {partition.name} (LIKE {EVENTS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f'WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE "timestamp" >= %s'
                       f' AND "timestamp" < %s RETURNING *) INSERT INTO {partition.name} SELECT * FROM moved',
                       [partition.start, partition.end])
        cursor.execute(f"ALTER TABLE {EVENTS} ATTACH PARTITION {partition.name} FOR VALUES FROM (%s) TO (%s)",
                       [partition.start, partition.end])


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    partition: str
    archived: bool
    rows: int = 0
    path: str = ""
    reason: str = ""  # why a due partition is kept

    def as_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "archived": self.archived, "rows": self.rows, "path": self.path,
                "reason": self.reason}


_OPEN_WINDOW_EVENTS = f"""
    SELECT EXISTS (
        SELECT 1 FROM {{partition}} e JOIN {Subscription._meta.db_table} s ON s.id = e.subscription_id
         WHERE {closed_before_sql("s")} IS NULL OR e."timestamp" >= {closed_before_sql("s")})
"""
_RECURRING_EVENTS = f"""
    SELECT EXISTS (
        SELECT 1 FROM {{partition}} e JOIN {BillableMetric._meta.db_table} m
               ON m.service_id = e.service_id AND m.code = e.code
         WHERE m.recurring)
"""
_RELEASE_KEYS = f"""
    DELETE FROM {UsageEventKey._meta.db_table} k USING {{partition}} e
     WHERE k.service_id = e.service_id AND k.transaction_id = e.transaction_id
       AND k.external_subscription_id = e.external_subscription_id AND k.event_id = e.id
"""


def archive_event_partitions(*, now: datetime | None = None, older_than_months: int | None = None,
                             directory: Path | None = None) -> list[RetentionOutcome]:
    """Archive, detach and drop the monthly partitions that the retention policy lets go
    (see the module docstring); ``older_than_months`` 0 keeps everything."""
    months = settings.EVENTS_RETENTION_MONTHS if older_than_months is None else older_than_months
    if months <= 0 or not is_partitioned():
        return []
    target = Path(directory or settings.EVENTS_ARCHIVE_DIR)
    cutoff = add_months(month_start(now or dj_timezone.now()), -months)
    outcomes = []
    for partition in event_partitions():
        if partition.end > cutoff:
            continue
        reason = _reason_to_keep(partition)
        if reason:
            outcomes.append(RetentionOutcome(partition.name, archived=False, reason=reason))
            continue
        rows, path = _write_archive(partition, target)
        with connection.cursor() as cursor:
            # The keys go first: events of closed windows are refused (period_closed)
            # whatever their keys, so no resend can slip in between.
            cursor.execute(_RELEASE_KEYS.format(partition=partition.name))
        with transaction.atomic(), connection.cursor() as cursor:
            # DETACH takes an exclusive lock on the events table: give up rather than
            # queue ingest behind a long reader; the next run tries again.
            cursor.execute("SET LOCAL lock_timeout = '5s'")
            cursor.execute(f"ALTER TABLE {EVENTS} DETACH PARTITION {partition.name}")
            cursor.execute(f"DROP TABLE {partition.name}")
        outcomes.append(RetentionOutcome(partition.name, archived=True, rows=rows, path=str(path)))
    return outcomes


def _reason_to_keep(partition: EventPartition) -> str:
    with connection.cursor() as cursor:
        cursor.execute(_OPEN_WINDOW_EVENTS.format(partition=partition.name))
        if cursor.fetchone()[0]:
            return "events in a window that is not closed yet"
        cursor.execute(_RECURRING_EVENTS.format(partition=partition.name))
        if cursor.fetchone()[0]:
            return "events of a recurring metric (carried into later windows)"
    return ""


def _write_archive(partition: EventPartition, directory: Path) -> tuple[int, Path]:
    """``<name>.csv.gz`` (header + rows in id order) and ``<name>.json`` (bounds, row
    count, SHA-256 of the compressed file), written under temporary names and renamed
    only once complete and on disk."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{partition.name}.csv.gz"
    partial = path.with_name(path.name + ".partial")
    connection.ensure_connection()
    with open(partial, "wb") as raw_file:
        with gzip.GzipFile(fileobj=raw_file, mode="wb", mtime=0) as compressed:
            with psycopg.Cursor(connection.connection) as cursor:
                copy_sql = f"COPY (SELECT * FROM {partition.name} ORDER BY id) TO STDOUT (FORMAT csv, HEADER true)"
                with cursor.copy(copy_sql) as copy:
                    for chunk in copy:
                        compressed.write(chunk)
        raw_file.flush()
        os.fsync(raw_file.fileno())
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    rows = _count_rows(partition)
    os.replace(partial, path)
    manifest = {"table": EVENTS, "partition": partition.name, "from": partition.start.isoformat(),
                "to": partition.end.isoformat(), "rows": rows, "format": "csv with header, gzip",
                "sha256": digest, "archived_at": dj_timezone.now().isoformat()}
    (directory / f"{partition.name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return rows, path


def _count_rows(partition: EventPartition) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {partition.name}")
        return int(cursor.fetchone()[0])

