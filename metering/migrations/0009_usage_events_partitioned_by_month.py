"""Usage events partitioned by month on PostgreSQL; their unique key in its own table.

* ``metering_usageeventkey`` (every backend) takes over Lago's uniqueness rule
  (service, external_subscription_id, transaction_id) from the events table, filled
  from the events already stored.
* On PostgreSQL, ``metering_usageevent`` becomes a table partitioned by RANGE of
  ``timestamp``: one partition per calendar month (UTC) of the existing rows, of the
  current month and of the next ``AHEAD`` months, plus a DEFAULT partition for anything
  outside them. The existing rows are copied over, ids and the id sequence kept. The
  primary key becomes (id, timestamp): a partitioned table's unique indexes must
  contain the partition key. The embedded SQLite default keeps its plain table.

Not reversible on PostgreSQL (the partitions would have to be merged back).
"""
from datetime import datetime, timezone

import django.db.models.deletion
from django.db import migrations, models

EVENTS = "metering_usageevent"
OLD = "metering_usageevent_unpartitioned"
AHEAD = 3


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def backfill_keys(apps, schema_editor):
    schema_editor.execute(
        "INSERT INTO metering_usageeventkey (service_id, transaction_id, external_subscription_id, event_id,"
        ' "timestamp", payload_hash)'
        ' SELECT service_id, transaction_id, external_subscription_id, id, "timestamp", payload_hash'
        f" FROM {EVENTS}"
    )


def partition_events(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(max(id), 0) FROM {EVENTS}")
        (max_id,) = cursor.fetchone()
        # The months that hold events, the current one and AHEAD more; anything between
        # (rare outliers far in the past) lands in the DEFAULT partition.
        cursor.execute(f"SELECT DISTINCT date_trunc('month', \"timestamp\" AT TIME ZONE 'UTC') FROM {EVENTS}")
        months = {month.replace(tzinfo=timezone.utc) for (month,) in cursor.fetchall()}
        month = _month_start(datetime.now(timezone.utc))
        for _ in range(AHEAD + 1):
            months.add(month)
            month = _next_month(month)
        execute = cursor.execute
        execute(f"ALTER TABLE {EVENTS} RENAME TO {OLD}")
        execute(f"ALTER TABLE {OLD} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        execute(f"ALTER INDEX {EVENTS}_pkey RENAME TO {OLD}_pkey")
        execute("DROP INDEX IF EXISTS usage_event_rating_cover")
        execute(f"CREATE TABLE {EVENTS} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                ' PARTITION BY RANGE ("timestamp")')
        execute(f"CREATE SEQUENCE {EVENTS}_id_seq OWNED BY {EVENTS}.id")
        execute(f"SELECT setval('{EVENTS}_id_seq', %s, %s)", [max(max_id, 1), max_id > 0])
        execute(f"ALTER TABLE {EVENTS} ALTER COLUMN id SET DEFAULT nextval('{EVENTS}_id_seq')")
        execute(f'ALTER TABLE {EVENTS} ADD CONSTRAINT {EVENTS}_pkey PRIMARY KEY (id, "timestamp")')
        execute(f'CREATE INDEX usage_event_rating_cover ON {EVENTS} (subscription_id, code, "timestamp")'
                " INCLUDE (value)")
        execute(f"ALTER TABLE {EVENTS} ADD CONSTRAINT {EVENTS}_service_id_fk FOREIGN KEY (service_id)"
                " REFERENCES identity_service (id) DEFERRABLE INITIALLY DEFERRED")
        execute(f"ALTER TABLE {EVENTS} ADD CONSTRAINT {EVENTS}_subscription_id_fk FOREIGN KEY (subscription_id)"
                " REFERENCES metering_subscription (id) DEFERRABLE INITIALLY DEFERRED")
        for month in sorted(months):
            execute(f"CREATE TABLE {EVENTS}_p{month:%Y_%m} PARTITION OF {EVENTS}"
                    " FOR VALUES FROM (%s) TO (%s)", [month, _next_month(month)])
        execute(f"CREATE TABLE {EVENTS}_default PARTITION OF {EVENTS} DEFAULT")
        execute(f"INSERT INTO {EVENTS} SELECT * FROM {OLD}")
        execute(f"DROP TABLE {OLD}")
        execute(f"ANALYZE {EVENTS}")
        # Raised by ingest's one-statement store (metering.services.ingest._STORE) to undo
        # itself when a concurrent request claimed only part of a batch's keys.
        execute("""
            CREATE OR REPLACE FUNCTION metering_ingest_refuse_partial(partial boolean) RETURNS boolean
            LANGUAGE plpgsql AS $$
            BEGIN
                IF partial THEN
                    RAISE EXCEPTION 'a concurrent request stored part of this batch' USING ERRCODE = 'FB001';
                END IF;
                RETURN false;
            END $$""")


class Migration(migrations.Migration):
    # CREATE/ALTER of the partitioned table and the copy run in one transaction.
    atomic = True

    dependencies = [
        ('identity', '0002_api_idempotency_key'),
        ('metering', '0008_catalogue_rounding_min_amount_window_terms'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageEventKey',
            fields=[
                ('pk', models.CompositePrimaryKey('service_id', 'transaction_id', 'external_subscription_id',
                                                  blank=True, editable=False, primary_key=True, serialize=False)),
                ('service', models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=django.db.models.deletion.DO_NOTHING, related_name='+',
                                              to='identity.service')),
                ('transaction_id', models.CharField(max_length=255)),
                ('external_subscription_id', models.CharField(max_length=255)),
                ('event_id', models.BigIntegerField()),
                ('timestamp', models.DateTimeField()),
                ('payload_hash', models.CharField(max_length=64)),
            ],
        ),
        migrations.RunPython(backfill_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='usageevent',
            name='usage_event_transaction_unique',
        ),
        migrations.RunPython(partition_events),
    ]
